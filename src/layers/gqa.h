#pragma once
// Grouped-query attention (Llama, Qwen2): H query heads share KVH key/value heads.
// Cache layout per token: keys [KVH, head_dim] then values [KVH, head_dim].
#include "layers/common.h"
#include "layers/rope.h"

namespace fathom {

struct GqaWeights {
  const Weight *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;  // [H*hd, D] ... [D, H*hd]
  const Weight *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *o_bias = nullptr;
};

class GqaAttention : public AttnLayer {
 public:
  GqaAttention(const ModelConfig& cfg, GqaWeights w, const Rope& rope);
  void forward(const float* h, float* out, const LayerCtx& ctx) override;
  static int64_t cache_width(const ModelConfig& cfg) { return 2 * cfg.num_key_value_heads * cfg.head_dim; }
  size_t active_bytes() const override;

 private:
  GqaWeights w_;
  const Rope& rope_;
  AttnShape shape_;
};

}  // namespace fathom
