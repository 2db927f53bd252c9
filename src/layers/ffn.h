#pragma once
// Feed-forward layers: the SwiGLU MLP and DeepSeekMoE (routed + shared experts), the latter
// in stages — route → dispatch → experts → combine — so that a process can hold a subset of
// the experts (expert parallelism) and training can reuse each stage.
#include <cstdint>
#include <vector>

#include "backend/routing.h"
#include "layers/common.h"

namespace fathom {

struct MlpWeights {
  const Weight *gate = nullptr, *up = nullptr, *down = nullptr;  // [I, D], [I, D], [D, I]
  const Weight *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
  size_t bytes() const;
};

// down(silu(gate(x)) * up(x)); x: [rows, D], out: [rows, D]
void mlp_forward(const MlpWeights& w, const float* x, int64_t rows, float* out, const LayerCtx& ctx);

class Mlp : public FfnLayer {
 public:
  explicit Mlp(MlpWeights w) : w_(w) {}
  void forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) override;
  size_t active_bytes() const override { return w_.bytes(); }

 private:
  MlpWeights w_;
};

// Which routed experts this process holds; the others' weights are never loaded or run.
struct ExpertPlacement {
  std::vector<bool> held;  // [E]
  static ExpertPlacement all(int64_t n_experts) { return ExpertPlacement{std::vector<bool>(size_t(n_experts), true)}; }
  bool holds(int64_t e) const { return held.empty() || (e >= 0 && size_t(e) < held.size() && held[size_t(e)]); }
};

struct MoeWeights {
  const Weight* router = nullptr;  // [E, D]
  const Weight* bias = nullptr;    // [E] e_score_correction_bias (noaux_tc)
  std::vector<MlpWeights> experts; // [E]; gate == nullptr for experts not held
  MlpWeights shared;               // gate == nullptr when there are none
};

class Moe : public FfnLayer {
 public:
  Moe(const ModelConfig& cfg, MoeWeights w, ExpertPlacement placement);
  void forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) override;
  size_t active_bytes() const override;

  // The stages, each on ctx.acts->moe.
  // route: router logits → top-k experts and weights per row (host).
  void route(const float* h, int64_t rows, const LayerCtx& ctx);
  // dispatch: rows grouped by held expert (the plan); rows gathered unless a single row.
  void dispatch(const float* h, int64_t rows, const LayerCtx& ctx);
  // experts: SwiGLU of every held expert over its rows, and of the shared experts.
  void experts(const float* h, int64_t rows, const LayerCtx& ctx);
  // combine: out[t] = Σ_k w·y in expert order (fixed, whatever else is in the batch) + shared.
  void combine(float* out, int64_t rows, const LayerCtx& ctx);

 private:
  RouterConfig rc_;
  MoeWeights w_;
  ExpertPlacement placement_;
  int64_t D_ = 0, I_ = 0, SI_ = 0;
  std::vector<std::vector<int32_t>> by_expert_;  // [E][row*K + k routed there], reused
};

}  // namespace fathom
