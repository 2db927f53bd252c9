#pragma once
// Vector helpers for the model code: f32 dot/axpy and the absorbed-MLA decode inner loops
// over a latent cache. AVX2 when the CPU has it; results are deterministic (fixed order)
// but differ from the scalar fallback by rounding.
#include <cstdint>

#include "core/dtype.h"

namespace fathom::cpu {

float dot(const float* a, const float* b, int64_t n);
// y[i] += a * x[i]
void axpy(float a, const float* x, float* y, int64_t n);

// A cache of T rows of `dim` values (F32 or BF16), row t at element offset t * stride.
struct LatentCache {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t stride = 0;  // elements between rows
};

// scores[t] = q · cache[t] for t < T.                      q: [dim], scores: [T]
void latent_scores(const float* q, const LatentCache& cache, int64_t T, int64_t dim, float* scores);
// out = Σ_t p[t] · cache[t] (overwrites out).              p: [T], out: [dim]
void latent_weighted_sum(const float* p, const LatentCache& cache, int64_t T, int64_t dim, float* out);

// The same for nh heads at once (each cache row is loaded once for several heads), bit
// identical to calling the one-head versions per head.
//   q: [nh] rows of dim, stride qs;  scores: [nh] rows of T, stride ss
void latent_scores_heads(const float* q, int64_t qs, int64_t nh, const LatentCache& cache, int64_t T, int64_t dim,
                         float* scores, int64_t ss);
//   p: [nh] rows of T, stride ps;    out: [nh] rows of dim, stride os
void latent_weighted_sum_heads(const float* p, int64_t ps, int64_t nh, const LatentCache& cache, int64_t T,
                               int64_t dim, float* out, int64_t os);

}  // namespace fathom::cpu
