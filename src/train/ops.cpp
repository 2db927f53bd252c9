#include "train/ops.h"

#include "backend/cpu/vmath.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "layers/rope.h"
#include "train/blas.h"

namespace fathom::train {

namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

}  // namespace

// ---- RMSNorm

void rmsnorm_fwd(const float* x, int64_t ldx, const float* w, float* y, int64_t ldy, float* rstd, int64_t rows,
                 int64_t dim, float eps, ThreadPool* pool) {
  auto run = [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * ldx;
      float* yr = y + r * ldy;
      float ss = 0.f;
      for (int64_t i = 0; i < dim; ++i) ss += xr[i] * xr[i];
      const float inv = 1.0f / std::sqrt(ss / float(dim) + eps);
      rstd[r] = inv;
      for (int64_t i = 0; i < dim; ++i) yr[i] = w[i] * (xr[i] * inv);
    }
  };
  if (pool && pool->size() > 1 && rows >= 64) pool->parallel_for(rows, 32, run);
  else run(0, rows, 0);
}

// y_i = w_i x_i r with r = (mean x² + eps)^-1/2, so dr/dx_j = -r³ x_j / dim and
// dx_j = r w_j dy_j - x_j r³/dim · Σ_i w_i dy_i x_i.
// With a pool, each thread sums dw over its block of rows and the blocks are added in order.
void rmsnorm_bwd(const float* dy, int64_t lddy, const float* x, int64_t ldx, const float* w, const float* rstd,
                 float* dx, int64_t lddx, float* dw, int64_t rows, int64_t dim, ThreadPool* pool) {
  const int nt = pool && pool->size() > 1 && rows >= 64 ? pool->size() : 1;
  std::vector<float> part(dw && nt > 1 ? size_t(nt) * size_t(dim) : 0, 0.0f);  // [threads, dim]
  auto run = [&](int64_t r0, int64_t r1, int t) {
    float* dwt = nt > 1 ? part.data() + size_t(t) * size_t(dim) : dw;
    for (int64_t r = r0; r < r1; ++r) {
      const float* dyr = dy + r * lddy;
      const float* xr = x + r * ldx;
      const float inv = rstd[r];
      float dot = 0.f;
      for (int64_t i = 0; i < dim; ++i) dot += w[i] * dyr[i] * xr[i];
      const float c = dot * inv * inv * inv / float(dim);
      if (dx) {
        float* dxr = dx + r * lddx;
        for (int64_t i = 0; i < dim; ++i) dxr[i] += inv * w[i] * dyr[i] - xr[i] * c;
      }
      if (dwt)
        for (int64_t i = 0; i < dim; ++i) dwt[i] += dyr[i] * xr[i] * inv;
    }
  };
  if (nt > 1) {
    // One block per thread, so which rows a partial holds depends only on the pool's size.
    const int64_t step = (rows + nt - 1) / nt;
    pool->parallel_for(nt, 1, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) run(t * step, std::min(rows, (t + 1) * step), int(t));
    });
    if (dw)
      for (int t = 0; t < nt; ++t)
        for (int64_t i = 0; i < dim; ++i) dw[i] += part[size_t(t) * size_t(dim) + size_t(i)];
  } else {
    run(0, rows, 0);
  }
}

// ---- RoPE

RopeTable make_rope_table(const ModelConfig& cfg, int64_t dim, bool interleaved, int64_t max_pos) {
  FATHOM_CHECK(dim > 0 && dim % 2 == 0, "rope table: dim {} must be even and positive", dim);
  const Rope rope(cfg, dim, interleaved);
  RopeTable t;
  t.dim = dim;
  t.interleaved = interleaved;
  t.max_pos = max_pos;
  const int64_t half = dim / 2;
  const float af = rope.attention_factor();
  const std::vector<float>& inv = rope.inv_freq();
  t.cos.resize(size_t(max_pos * half));
  t.sin.resize(size_t(max_pos * half));
  for (int64_t p = 0; p < max_pos; ++p)
    for (int64_t i = 0; i < half; ++i) {
      // The angle in fp32 (position × inv_freq), as inference and transformers form it.
      const float ang = float(p) * inv[size_t(i)];
      t.cos[size_t(p * half + i)] = float(std::cos(double(ang))) * af;
      t.sin[size_t(p * half + i)] = float(std::sin(double(ang))) * af;
    }
  return t;
}

namespace {
// The rotation of every pair by +angle (forward) or its transpose, -angle (backward).
void rope_apply(const RopeTable& rt, const Seqs& s, float* x, int64_t ld, int64_t heads, int64_t head_stride,
                int64_t offset, bool transpose) {
  FATHOM_CHECK(s.T <= rt.max_pos, "rope: T {} exceeds the table's {} positions", s.T, rt.max_pos);
  const int64_t half = rt.dim / 2, rows = s.rows();
  const float sign = transpose ? -1.0f : 1.0f;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = r % s.T;
    const float* cs = rt.cos.data() + pos * half;
    const float* sn = rt.sin.data() + pos * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + r * ld + h * head_stride + offset;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = rt.interleaved ? 2 * i : i, b = rt.interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b], si = sign * sn[i];
        v[a] = x0 * cs[i] - x1 * si;
        v[b] = x1 * cs[i] + x0 * si;
      }
    }
  }
}
}  // namespace

void rope_fwd(const RopeTable& rt, const Seqs& s, float* x, int64_t ld, int64_t heads, int64_t head_stride,
              int64_t offset) {
  rope_apply(rt, s, x, ld, heads, head_stride, offset, false);
}

void rope_bwd(const RopeTable& rt, const Seqs& s, float* dx, int64_t ld, int64_t heads, int64_t head_stride,
              int64_t offset) {
  rope_apply(rt, s, dx, ld, heads, head_stride, offset, true);
}

// ---- SwiGLU, embedding

void swiglu_fwd(const float* g, const float* u, float* h, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = g[i] * sigmoid(g[i]) * u[i];
}

// d silu(g)/dg = σ(g) (1 + g (1 - σ(g)))
void swiglu_bwd(const float* dh, const float* g, const float* u, float* dg, float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sg = sigmoid(g[i]), silu = g[i] * sg;
    dg[i] += dh[i] * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
    du[i] += dh[i] * silu;
  }
}

void swiglu_bwd_inplace(float* dh_dg, const float* g, const float* u, float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sg = sigmoid(g[i]), d = dh_dg[i];
    du[i] = d * g[i] * sg;
    dh_dg[i] = d * u[i] * sg * (1.0f + g[i] * (1.0f - sg));
  }
}

void embed_fwd(const float* E, const int32_t* ids, float* y, int64_t rows, int64_t D) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * D, E + int64_t(ids[r]) * D, size_t(D) * sizeof(float));
}

void embed_bwd(const float* dy, const int32_t* ids, float* dE, int64_t rows, int64_t D) {
  for (int64_t r = 0; r < rows; ++r) {
    float* e = dE + int64_t(ids[r]) * D;
    const float* d = dy + r * D;
    for (int64_t i = 0; i < D; ++i) e[i] += d[i];
  }
}

// ---- Attention
//
// Per (sequence, head) the products are GEMMs on strided views of q/k/v. Causality is used
// by row blocks: rows [r0, r1) only meet keys [0, r1), so the masked upper triangle beyond
// each block is never computed (≈ 5/8 of the full T×T work at T = 256).

namespace {

constexpr int64_t kRowBlock = 64;

// Causal softmax of row i (keys 0..i) of a probability row of length T; zeros past i.
void causal_softmax_row(float* p, int64_t i, int64_t T) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j <= i; ++j) mx = std::max(mx, p[j]);
  float sum = 0.f;
  for (int64_t j = 0; j <= i; ++j) {
    p[j] = std::exp(p[j] - mx);
    sum += p[j];
  }
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j <= i; ++j) p[j] *= inv;
  std::fill(p + i + 1, p + T, 0.f);
}

struct HeadViews {
  const float *q, *k, *v;  // first row of this (sequence, head); strides below
  int64_t ldq, ldk, ldv;
};

HeadViews head_views(const Seqs& s, const AttnDims& d, const float* q, const float* k, const float* v, int64_t b,
                     int64_t h) {
  const int64_t kh = h / (d.H / d.Hkv), r0 = b * s.T;
  return HeadViews{q + r0 * d.H * d.dqk + h * d.dqk, k + r0 * d.Hkv * d.dqk + kh * d.dqk,
                   v + r0 * d.Hkv * d.dv + kh * d.dv, d.H * d.dqk, d.Hkv * d.dqk, d.Hkv * d.dv};
}

void check_dims(const AttnDims& d) {
  FATHOM_CHECK(d.H > 0 && d.Hkv > 0 && d.H % d.Hkv == 0, "attention: {} heads are not groups of {} kv heads", d.H,
               d.Hkv);
}

// Runs unit(u, thread) for u in [0, n): on the pool's threads, each GEMM single-threaded (the
// units are the parallelism; a unit's score block stays in its core's cache), or serially
// with BLAS's own threads when there is no pool.
template <class F>
void for_units(ThreadPool* pool, int64_t n, F&& unit) {
  if (pool && pool->size() > 1 && n > 1) {
    const BlasSerialScope serial;
    pool->parallel_for(n, 1, [&](int64_t b, int64_t e, int t) {
      for (int64_t u = b; u < e; ++u) unit(u, t);
    });
  } else {
    for (int64_t u = 0; u < n; ++u) unit(u, 0);
  }
}

// One (sequence, head): probs[r0:r1, 0:r1] = softmax(scale · Q[r0:r1] K[0:r1]ᵀ),
// out[r0:r1] = P[r0:r1, 0:r1] V[0:r1].
void attend_head(const Seqs& s, const AttnDims& d, const float* q, const float* k, const float* v, float* out,
                 float* probs, int64_t b, int64_t h) {
  const int64_t T = s.T, ldo = d.H * d.dv;
  const HeadViews hv = head_views(s, d, q, k, v, b, h);
  float* P = probs + (b * d.H + h) * T * T;  // [T, T]
  float* o = out + b * T * ldo + h * d.dv;   // [T, dv] with row stride ldo
  for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
    const int64_t r1 = std::min(T, r0 + kRowBlock);
    sgemm(false, true, r1 - r0, r1, d.dqk, d.scale, hv.q + r0 * hv.ldq, hv.ldq, hv.k, hv.ldk, 0.f, P + r0 * T, T);
    for (int64_t i = r0; i < r1; ++i) causal_softmax_row(P + i * T, i, T);
    sgemm(false, false, r1 - r0, d.dv, r1, 1.f, P + r0 * T, T, hv.v, hv.ldv, 0.f, o + r0 * ldo, ldo);
  }
}

// One (sequence, head)'s backward into dq and (shared within its group) dk, dv; ds: [T, T] scratch.
void attend_head_bwd(const Seqs& s, const AttnDims& d, const float* q, const float* k, const float* v,
                     const float* probs, const float* dout, float* dq, float* dk, float* dv, float* ds, int64_t b,
                     int64_t h) {
  const int64_t T = s.T, ldo = d.H * d.dv;
  const HeadViews hv = head_views(s, d, q, k, v, b, h);
  const int64_t qoff = hv.q - q, koff = hv.k - k, voff = hv.v - v;
  const float* P = probs + (b * d.H + h) * T * T;
  const float* dO = dout + b * T * ldo + h * d.dv;
  for (int64_t r0 = 0; r0 < T; r0 += kRowBlock) {
    const int64_t r1 = std::min(T, r0 + kRowBlock), n = r1 - r0;
    sgemm(false, true, n, r1, d.dv, 1.f, dO + r0 * ldo, ldo, hv.v, hv.ldv, 0.f, ds + r0 * T, T);  // dP
    for (int64_t i = r0; i < r1; ++i) {
      const float* p = P + i * T;
      float* g = ds + i * T;
      float dot = 0.f;
      for (int64_t j = 0; j <= i; ++j) dot += p[j] * g[j];
      for (int64_t j = 0; j <= i; ++j) g[j] = p[j] * (g[j] - dot);
      // The block's GEMMs read dS up to column r1: past the diagonal it must be exactly 0.
      std::fill(g + i + 1, g + r1, 0.f);
    }
    sgemm(true, false, r1, d.dv, n, 1.f, P + r0 * T, T, dO + r0 * ldo, ldo, 1.f, dv + voff, hv.ldv);
    sgemm(false, false, n, d.dqk, r1, d.scale, ds + r0 * T, T, hv.k, hv.ldk, 1.f, dq + qoff + r0 * hv.ldq, hv.ldq);
    sgemm(true, false, r1, d.dqk, n, d.scale, ds + r0 * T, T, hv.q + r0 * hv.ldq, hv.ldq, 1.f, dk + koff, hv.ldk);
  }
}

}  // namespace

void attention_fwd(const Seqs& s, const AttnDims& d, const float* q, const float* k, const float* v, float* out,
                   float* probs, ThreadPool* pool) {
  check_dims(d);
  for_units(pool, s.B * d.H,
            [&](int64_t u, int) { attend_head(s, d, q, k, v, out, probs, u / d.H, u % d.H); });
}

// With S = scale·QKᵀ and P = softmax(S): dP = dO Vᵀ, dS = P ∘ (dP - rowsum(P ∘ dP)),
// dQ = scale·dS K, dK = scale·dSᵀ Q, dV = Pᵀ dO. A unit is one (sequence, K/V head): the
// heads of a group add into the same dK, dV, so they run one after another on one thread.
void attention_bwd(const Seqs& s, const AttnDims& d, const float* q, const float* k, const float* v,
                   const float* probs, const float* dout, float* dq, float* dk, float* dv, ThreadPool* pool) {
  check_dims(d);
  const int64_t T = s.T, group = d.H / d.Hkv;
  const int nt = pool ? std::max(1, pool->size()) : 1;
  std::vector<float> ds(size_t(nt) * size_t(T * T));  // [threads, T, T] dP, then dS in place
  for_units(pool, s.B * d.Hkv, [&](int64_t u, int t) {
    const int64_t b = u / d.Hkv, kh = u % d.Hkv;
    for (int64_t h = kh * group; h < (kh + 1) * group; ++h)
      attend_head_bwd(s, d, q, k, v, probs, dout, dq, dk, dv, ds.data() + size_t(t) * size_t(T * T), b, h);
  });
}

// ---- Cross-entropy

double cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t V, float scale,
                     float* dlogits, ThreadPool* pool, int64_t* correct) {
  const int nt = pool ? std::max(1, pool->size()) : 1;
  std::vector<double> loss(size_t(nt), 0.0);
  std::vector<int64_t> hits(size_t(nt), 0);
  auto run = [&](int64_t b, int64_t e, int t) {
    for (int64_t r = b; r < e; ++r) {
      const float* l = logits + r * V;
      float* d = dlogits + r * V;
      const int32_t tgt = targets[r];
      if (tgt < 0) {
        std::fill(d, d + V, 0.f);
        continue;
      }
      FATHOM_CHECK(tgt < V, "cross_entropy: target {} outside the vocabulary of {}", tgt, V);
      int64_t am = 0;
      for (int64_t j = 1; j < V; ++j)
        if (l[j] > l[am]) am = j;
      const float mx = l[am], lt = l[tgt];
      // One vectorized softmax pass (in place: dlogits may alias logits). p[argmax] is
      // exp(0) / Σ = 1 / Σ, at least 1/V, so the log-sum-exp comes back from it exactly
      // enough without a second pass of exps.
      if (d != l) std::copy(l, l + V, d);
      cpu::softmax(d, V);
      const double lse = double(mx) - std::log(double(d[am]));
      loss[size_t(t)] += lse - double(lt);
      hits[size_t(t)] += am == tgt;
      for (int64_t j = 0; j < V; ++j) d[j] *= scale;
      d[tgt] -= scale;
    }
  };
  if (pool && nt > 1 && rows > 1) pool->parallel_for(rows, 1, run);
  else run(0, rows, 0);
  double total = 0.0;
  int64_t n_ok = 0;
  for (int t = 0; t < nt; ++t) {
    total += loss[size_t(t)];
    n_ok += hits[size_t(t)];
  }
  if (correct) *correct = n_ok;
  return total;
}

void token_logprobs(float* logits, const int32_t* targets, int64_t rows, int64_t V, float* logp, float* entropy,
                    ThreadPool* pool) {
  const int nt = pool ? std::max(1, pool->size()) : 1;
  std::vector<float> scratch(size_t(nt) * size_t(V));  // [threads, V] each thread's row copy
  auto run = [&](int64_t b, int64_t e, int t) {
    float* keep = scratch.data() + size_t(t) * size_t(V);
    for (int64_t r = b; r < e; ++r) {
      float* l = logits + r * V;
      const int32_t tgt = targets[r];
      logp[r] = 0.f;
      entropy[r] = 0.f;
      if (tgt < 0) continue;
      FATHOM_CHECK(tgt < V, "token_logprobs: target {} outside the vocabulary of {}", tgt, V);
      int64_t am = 0;
      for (int64_t j = 1; j < V; ++j)
        if (l[j] > l[am]) am = j;
      std::copy(l, l + V, keep);
      cpu::softmax(l, V);
      // As in cross_entropy: p[argmax] = 1 / Σ exp(l - max) gives the log-sum-exp.
      const double lse = double(keep[am]) - std::log(double(l[am]));
      double pl = 0.0;
      for (int64_t j = 0; j < V; ++j) pl += double(l[j]) * double(keep[j]);
      logp[r] = float(double(keep[tgt]) - lse);
      entropy[r] = float(lse - pl);
    }
  };
  if (pool && nt > 1 && rows > 1) pool->parallel_for(rows, 1, run);
  else run(0, rows, 0);
}

void token_logprob_grad(float* probs, const int32_t* targets, const float* dlogp, int64_t rows, int64_t V,
                        ThreadPool* pool) {
  auto run = [&](int64_t b, int64_t e, int) {
    for (int64_t r = b; r < e; ++r) {
      float* p = probs + r * V;
      const int32_t tgt = targets[r];
      if (tgt < 0) {
        std::fill(p, p + V, 0.f);
        continue;
      }
      const float g = dlogp[r];
      for (int64_t j = 0; j < V; ++j) p[j] *= -g;
      p[tgt] += g;
    }
  };
  if (pool && pool->size() > 1 && rows > 1) pool->parallel_for(rows, 1, run);
  else run(0, rows, 0);
}

}  // namespace fathom::train
