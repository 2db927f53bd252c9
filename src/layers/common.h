#pragma once
// What every layer sees of a forward pass: the backend, the batch, the KV cache and the
// named activation buffers. Layers compute only through the backend (backend/backend.h).
#include <cstdint>
#include <vector>

#include "backend/backend.h"
#include "backend/kv_cache.h"
#include "layers/activations.h"

namespace fathom {

enum class AttnMode { Absorbed, Naive };  // MLA only: naive expands k/v from the latent cache

struct LayerCtx {
  Backend* be = nullptr;
  int64_t layer = 0;             // index into the KV cache
  const BatchRows* batch = nullptr;
  KvCache* cache = nullptr;
  Activations* acts = nullptr;
  AttnMode attn = AttnMode::Absorbed;
};

// y[m, w.rows] = x[m, w.cols] · wᵀ (+ bias)
inline void linear(Backend& be, const Weight& w, const float* x, int64_t m, float* y, const Weight* bias = nullptr) {
  be.matmul(w, x, m, y);
  if (bias) be.add_bias(y, m, *bias);
}

class AttnLayer {
 public:
  virtual ~AttnLayer() = default;
  // h: [rows, hidden] normed input; out: [rows, hidden]
  virtual void forward(const float* h, float* out, const LayerCtx& ctx) = 0;
  // Weight bytes one token reads.
  virtual size_t active_bytes() const = 0;
};

class FfnLayer {
 public:
  virtual ~FfnLayer() = default;
  // h: [rows, hidden] normed input; out: [rows, hidden]
  virtual void forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) = 0;
  // Weight bytes one token reads.
  virtual size_t active_bytes() const = 0;
};

}  // namespace fathom
