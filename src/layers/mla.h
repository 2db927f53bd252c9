#pragma once
// Multi-head latent attention (DeepSeek-V2/V3).
//
// The cache holds, per token, the normed latent c (kv_lora_rank) and the roped shared key
// k_pe (qk_rope_head_dim). Absorbed: kv_b_proj is folded into the query (q_lat = W_UKᵀ q_nope)
// and the output (o = W_UV · Σ p c), so attention runs in the latent space. Naive: k and v are
// expanded from the cached latents with kv_b_proj, as the reference does.
#include "backend/cpu/packed.h"
#include "layers/common.h"
#include "layers/rope.h"

namespace fathom {

struct MlaWeights {
  const cpu::WeightView* q_a = nullptr;         // [q_lora, hidden]   (q-LoRA)
  const std::vector<float>* q_a_norm = nullptr;  // [q_lora]
  const cpu::WeightView* q_b = nullptr;         // [H*qk_head, q_lora]
  const cpu::WeightView* q = nullptr;           // [H*qk_head, hidden] (no q-LoRA)
  const cpu::WeightView* kv_a = nullptr;        // [kv_lora + rope, hidden]
  const std::vector<float>* kv_a_norm = nullptr; // [kv_lora]
  const cpu::WeightView* kv_b = nullptr;        // [H*(nope+v), kv_lora]
  const cpu::WeightView* o = nullptr;           // [hidden, H*v]
};

// kv_b_proj split for the absorbed path, in a format close to the stored one: W_UKᵀ per head
// (so q_lat = W_UKᵀ q_nope is an ordinary product) and W_UV per head.
struct MlaAbsorbedWeights {
  cpu::WeightView uk_t;  // [H*r, nope]
  cpu::WeightView uv;    // [H*v, r]
  cpu::AlignedBytes uk_t_data, uv_data;
  // Block formats are packed for the CPU's fastest kernel when `repack` and it pays.
  static MlaAbsorbedWeights from(const cpu::WeightView& kv_b, int64_t H, int64_t nope, int64_t v, bool repack);
  // Rows [h*n, (h+1)*n) of w.
  static cpu::WeightView head(const cpu::WeightView& w, int64_t h, int64_t n);
};

class MlaAttention : public AttnLayer {
 public:
  MlaAttention(const ModelConfig& cfg, MlaWeights w, const Rope& rope);
  void forward(const float* h, float* out, const LayerCtx& ctx) override;
  static int64_t cache_width(const ModelConfig& cfg) { return cfg.kv_lora_rank + cfg.qk_rope_head_dim; }
  size_t active_bytes() const;

 private:
  void attend_absorbed(const float* q, float* o, const LayerCtx& ctx);
  void attend_row_split(const float* ql, int64_t i, float* c_all, const LayerCtx& ctx);
  void scaled_softmax(float* s, int64_t P) const;
  void attend_naive(const float* q, float* o, const LayerCtx& ctx);

  const ModelConfig& cfg_;
  MlaWeights w_;
  MlaAbsorbedWeights abs_;
  std::vector<cpu::WeightView> uk_heads_, uv_heads_;  // [H] views into abs_
  std::vector<cpu::MatmulTask> tasks_;
  const Rope& rope_;
  int64_t H_, nope_, rope_dim_, v_, r_;
  float scale_;
};

}  // namespace fathom
