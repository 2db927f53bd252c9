#pragma once
// The attention layers for training, forward and backward: MLA in the naive form (per-head
// K and V rebuilt from the latent, as HF and DeepSeek's reference train it) and GQA with
// optional biases. Backward adds into dx and into every parameter's gradient.
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"
#include "train/ops.h"
#include "train/blas.h"
#include "train/param.h"

namespace fathom::train {

struct MlaParams {
  Param* q_a = nullptr;       // [q_lora_rank, D]            (q_lora_rank > 0)
  Param* q_a_norm = nullptr;  // [q_lora_rank]
  Param* q_b = nullptr;       // [H * qk_head_dim, q_lora_rank]
  Param* q = nullptr;         // [H * qk_head_dim, D]        (q_lora_rank == 0)
  Param* kv_a = nullptr;      // [kv_lora_rank + rope_dim, D]
  Param* kv_a_norm = nullptr; // [kv_lora_rank]
  Param* kv_b = nullptr;      // [H * (nope + v_head_dim), kv_lora_rank]
  Param* o = nullptr;         // [D, H * v_head_dim]
};

// Everything the forward keeps for the backward (named so a test can read any of them).
struct MlaSaved {
  std::vector<float> q_a, q_a_rstd, q_a_n;  // [rows, q_lora], [rows], [rows, q_lora]
  std::vector<float> q;                     // [rows, H, qk_head] after rope
  std::vector<float> kv_a, kv_rstd, kv_n;   // [rows, kv_lora + rope], [rows], [rows, kv_lora]
  std::vector<float> k, v;                  // [rows, H, qk_head] (rope part roped), [rows, H, v_head]
  std::vector<float> probs;                 // [B, H, T, T]
  std::vector<float> attn;                  // [rows, H, v_head]
};

class TrainMla {
 public:
  // rope: a table with dim qk_rope_head_dim, interleaved as the config says, covering T.
  TrainMla(const ModelConfig& cfg, MlaParams p, const RopeTable* rope);
  // x: [rows, D] (input, already normed); y: [rows, D] (overwritten)
  void forward(const Seqs& s, const float* x, float* y, MlaSaved& sv, const Compute& cx) const;
  // dy: [rows, D]; dx: [rows, D] += ...
  void backward(const Seqs& s, const MlaSaved& sv, const float* x, const float* dy, float* dx, const Compute& cx) const;

 private:
  const ModelConfig& cfg_;
  MlaParams p_;
  const RopeTable* rope_;
};

struct GqaParams {
  Param *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;  // [H*hd, D], [Hkv*hd, D] ×2, [D, H*hd]
  Param *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *o_bias = nullptr;  // optional
};

struct GqaSaved {
  std::vector<float> q, k, v;  // after bias and rope: [rows, H, hd], [rows, Hkv, hd] ×2
  std::vector<float> probs;    // [B, H, T, T]
  std::vector<float> attn;     // [rows, H, hd]
};

class TrainGqa {
 public:
  TrainGqa(const ModelConfig& cfg, GqaParams p, const RopeTable* rope);
  void forward(const Seqs& s, const float* x, float* y, GqaSaved& sv, const Compute& cx) const;
  void backward(const Seqs& s, const GqaSaved& sv, const float* x, const float* dy, float* dx, const Compute& cx) const;

 private:
  const ModelConfig& cfg_;
  GqaParams p_;
  const RopeTable* rope_;
};

}  // namespace fathom::train
