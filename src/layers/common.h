#pragma once
// What every layer sees of a batch, and reusable scratch memory.
#include <cstdint>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/vmath.h"
#include "core/thread_pool.h"
#include "model/kv_cache.h"
#include "model/model.h"

namespace fathom {

// Row r of the batch is token pos[r] of the sequence in cache slot slot[r]. Rows of one
// chunk are consecutive, in position order.
struct BatchRows {
  int64_t rows = 0;
  std::vector<int64_t> slot, pos;  // [rows]
};

// Grow-only scratch buffers: after the first steps of a given batch shape the decode loop
// allocates nothing.
class Scratch {
 public:
  float* get(size_t id, size_t n) {
    if (bufs_.size() <= id) bufs_.resize(id + 1);
    if (bufs_[id].size() < n) bufs_[id].resize(n);
    return bufs_[id].data();
  }

 private:
  std::vector<std::vector<float>> bufs_;
};

struct LayerCtx {
  int64_t layer = 0;
  const BatchRows* batch = nullptr;
  KvCache* cache = nullptr;
  ThreadPool* pool = nullptr;
  Scratch* scratch = nullptr;
  AttnMode attn = AttnMode::Absorbed;
};

// y[m, rows(w)] = x[m, cols(w)] · wᵀ (+ bias)
// y[i, :] += bias for each of m rows of n (no-op without a bias).
inline void add_bias(float* y, int64_t m, int64_t n, const std::vector<float>* bias) {
  if (bias)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) y[i * n + j] += (*bias)[size_t(j)];
}

// g[i] = silu(g[i]) · u[i] over n values, split across the pool when worth a section (the
// exp per element makes it the longest serial loop of a decode step's MLP).
inline void swiglu(float* g, const float* u, int64_t n, ThreadPool& pool) {
  pool.parallel_for(n, 4096, [&](int64_t b, int64_t e, int) {
    cpu::swiglu(g + b, u + b, e - b);
  });
}

inline void linear(const cpu::WeightView& w, const float* x, int64_t m, float* y, ThreadPool& pool,
                   const std::vector<float>* bias = nullptr) {
  cpu::matmul(w, x, m, y, pool);
  add_bias(y, m, w.rows, bias);
}

class AttnLayer {
 public:
  virtual ~AttnLayer() = default;
  // h: [rows, hidden] normed input; out: [rows, hidden]
  virtual void forward(const float* h, float* out, const LayerCtx& ctx) = 0;
};

class FfnLayer {
 public:
  virtual ~FfnLayer() = default;
  virtual void forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) = 0;
  // Weight bytes one token reads.
  virtual size_t active_bytes() const = 0;
};

}  // namespace fathom
