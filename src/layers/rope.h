#pragma once
// Rotary position embeddings with the scalings transformers implements: none, linear, YaRN
// (with mscale / mscale_all_dim), llama3.
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "io/config.h"

namespace fathom {

class Rope {
 public:
  // dim: the rotated width per head. interleaved: rotate pairs (2i, 2i+1) as DeepSeek does;
  // otherwise (i, i + dim/2) as Llama/Qwen do.
  Rope(const ModelConfig& cfg, int64_t dim, bool interleaved);
  // What the backend's rope op needs (the table stays here, in host memory).
  RopeParams params() const { return RopeParams{inv_freq_.data(), dim_, interleaved_, attn_factor_}; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  float attention_factor() const { return attn_factor_; }

 private:
  int64_t dim_;
  bool interleaved_;
  std::vector<float> inv_freq_;  // [dim/2]
  float attn_factor_ = 1.0f;     // multiplies cos and sin
};

}  // namespace fathom
