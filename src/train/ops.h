#pragma once
// Elementwise and row-wise training ops, forward and backward, on host fp32 buffers.
// Convention: every backward ADDS into its gradient outputs (dx and parameter grads); the
// caller zeroes them. Buffers are row-major; shapes are in the comments.
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"
#include "train/param.h"

namespace fathom::train {

// RMSNorm: y = x * rstd * w, rstd = 1/sqrt(mean(x²) + eps) per row.
// x, y: [rows, dim] with row strides ldx / ldy; w: [dim]; rstd: [rows] (saved for backward).
void rmsnorm_fwd(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, float* rstd, int64_t rows,
                 int64_t dim, float eps, ThreadPool* pool = nullptr);
// dx[rows, dim] (stride lddx) += ...; dw[dim] += ...
void rmsnorm_bwd(const float* dy, int64_t lddy, const float* x, int64_t ldx, const float* w, const float* rstd,
                 float* dx, int64_t lddx, float* dw, int64_t rows, int64_t dim, ThreadPool* pool = nullptr);

// Rotary embedding for training: cos/sin per (position, pair), the attention factor folded in.
struct RopeTable {
  int64_t dim = 0;           // rotated width per head (even)
  bool interleaved = false;  // pairs (2i, 2i+1) as DeepSeek; else (i, i + dim/2) as Llama/Qwen
  int64_t max_pos = 0;
  std::vector<float> cos, sin;  // [max_pos, dim/2]
};
// From the config's rope (inv_freq, YaRN/llama3 scaling and attention factor as layers/rope.h
// computes them), for positions 0..max_pos-1.
RopeTable make_rope_table(const ModelConfig& cfg, int64_t dim, bool interleaved, int64_t max_pos);
// In place on x: rows of `heads` vectors; the rotated part of head h in row r starts at
// x + r*ld + h*head_stride + offset. Row r has position r % T (seqs.T).
void rope_fwd(const RopeTable& rt, const Seqs& s, float* x, int64_t ld, int64_t heads, int64_t head_stride,
              int64_t offset);
// Its transpose, in place on the gradient (the rotation is linear).
void rope_bwd(const RopeTable& rt, const Seqs& s, float* dx, int64_t ld, int64_t heads, int64_t head_stride,
              int64_t offset);

// SwiGLU: h = silu(g) * u. g, u, h: [n].
void swiglu_fwd(const float* g, const float* u, float* h, int64_t n);
// dg, du += ...
void swiglu_bwd(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n);
// The same without extra buffers: dh_dg holds dh and gets dg; du is overwritten.
void swiglu_bwd_inplace(float* dh_dg, const float* g, const float* u, float* du, int64_t n);

// Embedding lookup: y[rows, D] = E[ids[r]]; backward: dE[ids[r]] += dy[r] (in row order).
void embed_fwd(const float* E, const int32_t* ids, float* y, int64_t rows, int64_t D);
void embed_bwd(const float* dy, const int32_t* ids, float* dE, int64_t rows, int64_t D);

// Causal softmax attention of each sequence (positions 0..T-1), GQA when Hkv < H.
// q: [rows, H, dqk], k: [rows, Hkv, dqk], v: [rows, Hkv, dv], out: [rows, H, dv] (contiguous).
// probs: [B, H, T, T] softmax probabilities (saved for backward; the upper triangle is 0).
struct AttnDims {
  int64_t H = 0, Hkv = 0, dqk = 0, dv = 0;
  float scale = 1.0f;  // softmax scale
};
void attention_fwd(const Seqs& s, const AttnDims& d, const float* q, const float* k, const float* v, float* out,
                   float* probs, ThreadPool* pool);
// dq, dk, dv += ... (same shapes as q, k, v)
void attention_bwd(const Seqs& s, const AttnDims& d, const float* q, const float* k, const float* v,
                   const float* probs, const float* dout, float* dq, float* dk, float* dv, ThreadPool* pool);

// Cross-entropy over rows of logits [rows, V] against targets[rows] (-1: no target).
// Returns the SUM of -log softmax(logits)[target] over targeted rows, and sets
// dlogits[rows, V] = scale * (softmax - onehot) on targeted rows and 0 elsewhere (overwrites;
// dlogits may alias logits). *correct (optional) counts rows whose argmax is the target.
double cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t V, float scale,
                     float* dlogits, ThreadPool* pool, int64_t* correct = nullptr);

// Per-token terms of a policy-gradient loss (GRPO). Over rows of logits [rows, V] with
// targets[rows] (-1: none): logp[r] = log softmax(logits)[target] and entropy[r] = the
// softmax's entropy (both 0 on untargeted rows). The logits are overwritten by the softmax
// probabilities, which token_logprob_grad then turns into the gradient.
void token_logprobs(float* logits, const int32_t* targets, int64_t rows, int64_t V, float* logp, float* entropy,
                    ThreadPool* pool);
// In place on the probabilities token_logprobs left: dlogits = dlogp[r] * (onehot - p), the
// gradient of Σ_r dlogp[r] · logp[r]; untargeted rows become 0.
void token_logprob_grad(float* probs, const int32_t* targets, const float* dlogp, int64_t rows, int64_t V,
                        ThreadPool* pool);

}  // namespace fathom::train
