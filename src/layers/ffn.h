#pragma once
// Feed-forward layers: the SwiGLU MLP and DeepSeekMoE (routed + shared experts).
#include <cstdint>
#include <vector>

#include "layers/common.h"

namespace fathom {

struct MlpWeights {
  const cpu::WeightView *gate = nullptr, *up = nullptr, *down = nullptr;  // [I, D], [I, D], [D, I]
  const std::vector<float> *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
  size_t bytes() const;
};

// down(silu(gate(x)) * up(x)); scratch ids from `scratch_base` on.
void mlp_forward(const MlpWeights& w, const float* x, int64_t rows, float* out, const LayerCtx& ctx,
                 size_t scratch_base);

class Mlp : public FfnLayer {
 public:
  explicit Mlp(MlpWeights w) : w_(w) {}
  void forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) override;
  size_t active_bytes() const override { return w_.bytes(); }

 private:
  MlpWeights w_;
};

// Expert selection for one token, from the router's raw logits.
struct RouterConfig {
  int64_t n_experts = 0, top_k = 0, n_group = 1, topk_group = 1;
  ScoringFunc scoring = ScoringFunc::Softmax;
  TopkMethod method = TopkMethod::Greedy;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  static RouterConfig from(const ModelConfig& c);
};

// logits: [n_experts]; bias: [n_experts] or null (used only to select, never to weight).
// Writes top_k expert ids (in selection order) and their weights. scratch: [2 * n_experts].
void route_token(const RouterConfig& rc, const float* logits, const float* bias, int32_t* ids, float* weights,
                 float* scratch);

struct MoeWeights {
  const cpu::WeightView* router = nullptr;       // [E, D]
  const std::vector<float>* bias = nullptr;      // [E] e_score_correction_bias (noaux_tc)
  std::vector<MlpWeights> experts;               // [E]
  MlpWeights shared;                             // gate == nullptr when there are none
};

class Moe : public FfnLayer {
 public:
  Moe(const ModelConfig& cfg, MoeWeights w);
  void forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) override;
  size_t active_bytes() const override;

 private:
  RouterConfig rc_;
  MoeWeights w_;
  std::vector<std::vector<int32_t>> by_expert_;  // [E][row*K + k routed there], reused
  std::vector<int32_t> ids_;                     // [rows, K] selected experts, reused
  std::vector<cpu::MatmulTask> tasks_;           // reused
};

}  // namespace fathom
