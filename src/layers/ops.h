#pragma once
// Small row-wise ops in fp32. Each row is computed on its own, so results never depend on the
// other rows of a batch.
#include <cmath>
#include <cstdint>

#include "backend/cpu/vec.h"
#include "backend/cpu/vmath.h"

namespace fathom::ops {

// out[r] = x[r] * rsqrt(mean(x[r]^2) + eps) * w, for rows of width n. out may alias x.
inline void rmsnorm(const float* x, const float* w, float* out, int64_t rows, int64_t n, double eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* o = out + r * n;
    float ss = 0.f;
    for (int64_t i = 0; i < n; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / float(n) + float(eps));
    for (int64_t i = 0; i < n; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

// In-place softmax over n values (backend/cpu/vmath.h: one exp on every path).
inline void softmax(float* x, int64_t n) { cpu::softmax(x, n); }

// SIMD where the CPU has it (backend/cpu/vec.h).
using cpu::axpy;
using cpu::dot;

}  // namespace fathom::ops
