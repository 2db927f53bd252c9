// AVX-512F versions of the latent-cache loops (vec.h), picked where the CPU has AVX-512.
// Scores: per (head, row) one 16-lane FMA chain over dim in order, a fixed lane sum, then
// the scalar tail, whatever the blocking, so one head or many give the same bits.
// Weighted sums: per output column acc = fma(p[t], c[t], acc) over t in order, exactly the
// AVX2 arithmetic (the column tail goes 8 lanes wide, then scalar, as there).
#include <algorithm>
#include <cstdint>

#include "backend/cpu/vec_avx512.h"

#include <immintrin.h>

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*, which its uninitialized-use
// warnings report at every inlined use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#if defined(__clang__)
#define FATHOM_AVX512_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512vl,avx2,fma,f16c\"))), apply_to = function)")
#define FATHOM_AVX512_END _Pragma("clang attribute pop")
#else
#define FATHOM_AVX512_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512vl,avx2,fma,f16c\")")
#define FATHOM_AVX512_END _Pragma("GCC pop_options")
#endif

// Loops over a block's heads, rows and vectors are unrolled: with a variable index left,
// GCC 12 keeps the accumulator arrays in memory.
#define UNROLL _Pragma("GCC unroll 16")

FATHOM_AVX512_BEGIN
namespace fathom::cpu::avx512 {
namespace {

// 16 floats of row t at column i.
inline __m512 load16(const LatentCache& c, int64_t t, int64_t i) {
  const int64_t at = t * c.stride + i;
  if (c.dtype == DType::BF16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(c.data) + at));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  return _mm512_loadu_ps(static_cast<const float*>(c.data) + at);
}
inline __m256 load8(const LatentCache& c, int64_t t, int64_t i) {
  const int64_t at = t * c.stride + i;
  if (c.dtype == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(c.data) + at));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  return _mm256_loadu_ps(static_cast<const float*>(c.data) + at);
}
inline float elem(const LatentCache& c, int64_t t, int64_t i) {
  const int64_t at = t * c.stride + i;
  if (c.dtype == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(c.data)[at]);
  return static_cast<const float*>(c.data)[at];
}

// Fixed order: halves, then quarters, then pairs, then the last two lanes.
inline float hsum16(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  __m128 l = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  l = _mm_add_ps(l, _mm_movehl_ps(l, l));
  return _mm_cvtss_f32(_mm_add_ss(l, _mm_shuffle_ps(l, l, 1)));
}

// RB cache rows × HB heads.
template <int RB, int HB>
void scores_block(const float* q, int64_t qs, const LatentCache& c, int64_t t, int64_t dim, float* s, int64_t ss) {
  const int64_t d16 = dim & ~int64_t(15);
  __m512 acc[HB][RB];
  UNROLL for (int h = 0; h < HB; ++h)
    UNROLL for (int r = 0; r < RB; ++r) acc[h][r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < d16; i += 16) {
    __m512 cv[RB];
    UNROLL for (int r = 0; r < RB; ++r) cv[r] = load16(c, t + r, i);
    UNROLL for (int h = 0; h < HB; ++h) {
      const __m512 qv = _mm512_loadu_ps(q + h * qs + i);
      UNROLL for (int r = 0; r < RB; ++r) acc[h][r] = _mm512_fmadd_ps(qv, cv[r], acc[h][r]);
    }
  }
  UNROLL for (int h = 0; h < HB; ++h)
    UNROLL for (int r = 0; r < RB; ++r) {
      float v = hsum16(acc[h][r]);
      for (int64_t i = d16; i < dim; ++i) v += q[h * qs + i] * elem(c, t + r, i);
      s[h * ss + t + r] = v;
    }
}

template <int RB>
void scores_rows(const float* q, int64_t qs, int64_t nh, const LatentCache& c, int64_t t, int64_t dim, float* s,
                 int64_t ss) {
  int64_t h = 0;
  for (; h + 4 <= nh; h += 4) scores_block<RB, 4>(q + h * qs, qs, c, t, dim, s + h * ss, ss);
  switch (nh - h) {
    case 3: scores_block<RB, 3>(q + h * qs, qs, c, t, dim, s + h * ss, ss); break;
    case 2: scores_block<RB, 2>(q + h * qs, qs, c, t, dim, s + h * ss, ss); break;
    case 1: scores_block<RB, 1>(q + h * qs, qs, c, t, dim, s + h * ss, ss); break;
    default: break;
  }
}

// HB heads × NV vectors of 16 columns at column i0, over all T rows.
template <int HB, int NV>
void wsum_block(const float* p, int64_t ps, const LatentCache& c, int64_t T, int64_t i0, float* out, int64_t os) {
  __m512 acc[HB][NV];
  UNROLL for (int h = 0; h < HB; ++h)
    UNROLL for (int v = 0; v < NV; ++v) acc[h][v] = _mm512_setzero_ps();
  for (int64_t t = 0; t < T; ++t) {
    __m512 cv[NV];
    UNROLL for (int v = 0; v < NV; ++v) cv[v] = load16(c, t, i0 + 16 * v);
    UNROLL for (int h = 0; h < HB; ++h) {
      const __m512 w = _mm512_set1_ps(p[h * ps + t]);
      UNROLL for (int v = 0; v < NV; ++v) acc[h][v] = _mm512_fmadd_ps(w, cv[v], acc[h][v]);
    }
  }
  UNROLL for (int h = 0; h < HB; ++h)
    UNROLL for (int v = 0; v < NV; ++v) _mm512_storeu_ps(out + h * os + i0 + 16 * v, acc[h][v]);
}

template <int HB>
void wsum_heads(const float* p, int64_t ps, const LatentCache& c, int64_t T, int64_t dim, float* out, int64_t os) {
  const int64_t d64 = dim & ~int64_t(63), d16 = dim & ~int64_t(15), d8 = dim & ~int64_t(7);
  for (int64_t i0 = 0; i0 < d64; i0 += 64) wsum_block<HB, 4>(p, ps, c, T, i0, out, os);
  for (int64_t i0 = d64; i0 < d16; i0 += 16) wsum_block<HB, 1>(p, ps, c, T, i0, out, os);
  UNROLL for (int h = 0; h < HB; ++h) {
    const float* ph = p + h * ps;
    float* oh = out + h * os;
    if (d16 < d8) {
      __m256 acc = _mm256_setzero_ps();
      for (int64_t t = 0; t < T; ++t) acc = _mm256_fmadd_ps(_mm256_set1_ps(ph[t]), load8(c, t, d16), acc);
      _mm256_storeu_ps(oh + d16, acc);
    }
    for (int64_t i = d8; i < dim; ++i) {
      float s = 0;
      for (int64_t t = 0; t < T; ++t) s += ph[t] * elem(c, t, i);
      oh[i] = s;
    }
  }
}

}  // namespace

void latent_scores_heads(const float* q, int64_t qs, int64_t nh, const LatentCache& c, int64_t T, int64_t dim,
                         float* scores, int64_t ss) {
  // Chunks of cache rows that stay in L2 while every head block passes over them.
  const int64_t chunk = std::max<int64_t>(4, ((256 << 10) / std::max<int64_t>(1, dim * 4)) & ~int64_t(3));
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t t1 = std::min(T, t0 + chunk);
    int64_t t = t0;
    for (; t + 4 <= t1; t += 4) scores_rows<4>(q, qs, nh, c, t, dim, scores, ss);
    for (; t < t1; ++t) scores_rows<1>(q, qs, nh, c, t, dim, scores, ss);
  }
}

void latent_weighted_sum_heads(const float* p, int64_t ps, int64_t nh, const LatentCache& c, int64_t T, int64_t dim,
                               float* out, int64_t os) {
  int64_t h = 0;
  for (; h + 4 <= nh; h += 4) wsum_heads<4>(p + h * ps, ps, c, T, dim, out + h * os, os);
  for (; h < nh; ++h) wsum_heads<1>(p + h * ps, ps, c, T, dim, out + h * os, os);
}

}  // namespace fathom::cpu::avx512
FATHOM_AVX512_END
#undef UNROLL
