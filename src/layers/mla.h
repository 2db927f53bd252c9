#pragma once
// Multi-head latent attention (DeepSeek-V2/V3).
//
// The cache holds, per token, the normed latent c (kv_lora_rank) and the roped shared key
// k_pe (qk_rope_head_dim). Absorbed: kv_b_proj is folded into the query (q_lat = W_UKᵀ q_nope)
// and the output (o = W_UV · Σ p c), so attention runs in the latent space. Naive: k and v are
// expanded from the cached latents with kv_b_proj, as the reference does.
#include "layers/common.h"
#include "layers/rope.h"

namespace fathom {

struct MlaWeights {
  const Weight* q_a = nullptr;        // [q_lora, hidden]   (q-LoRA)
  const Weight* q_a_norm = nullptr;   // [q_lora]
  const Weight* q_b = nullptr;        // [H*qk_head, q_lora]
  const Weight* q = nullptr;          // [H*qk_head, hidden] (no q-LoRA)
  const Weight* kv_a = nullptr;       // [kv_lora + rope, hidden]
  const Weight* kv_a_norm = nullptr;  // [kv_lora]
  const Weight* kv_b = nullptr;       // [H*(nope+v), kv_lora]
  // Absorbed MLA's halves as a GGUF file stores them, when it does: run as stored instead
  // of being derived from kv_b.
  const Weight* uk_t = nullptr;       // [H*kv_lora, nope]
  const Weight* uv = nullptr;         // [H*v, kv_lora]
  const Weight* o = nullptr;          // [hidden, H*v]
};

class MlaAttention : public AttnLayer {
 public:
  MlaAttention(Backend& be, const ModelConfig& cfg, MlaWeights w, const Rope& rope);
  void forward(const float* h, float* out, const LayerCtx& ctx) override;
  static int64_t cache_width(const ModelConfig& cfg) { return cfg.kv_lora_rank + cfg.qk_rope_head_dim; }
  size_t active_bytes() const override;

 private:
  void attend_absorbed(float* q, float* o, const LayerCtx& ctx);
  void attend_naive(float* q, float* o, const LayerCtx& ctx);

  MlaWeights w_;
  MlaAbsorbed abs_;  // kv_b split per head, prepared by the backend
  std::vector<MatmulTask> tasks_;
  const Rope& rope_;
  AttnShape shape_;
  int64_t H_, nope_, rope_dim_, v_, r_;
  double eps_;
};

}  // namespace fathom
