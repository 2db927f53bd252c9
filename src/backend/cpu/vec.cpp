#include "backend/cpu/vec.h"

#include <algorithm>
#include <cstring>

#include "backend/cpu/matmul.h"
#include "backend/cpu/vec_avx512.h"
#include "core/error.h"
#include "backend/cpu/simd.h"

namespace fathom::cpu {
namespace {

float load_elem(const LatentCache& c, int64_t i) {
  if (c.dtype == DType::BF16) return bf16_to_f32(static_cast<const uint16_t*>(c.data)[i]);
  return static_cast<const float*>(c.data)[i];
}

// The cache from row t0 / from column i0 on.
LatentCache c_rows(const LatentCache& c, int64_t t0) {
  LatentCache r = c;
  r.data = static_cast<const uint8_t*>(c.data) + t0 * c.stride * (c.dtype == DType::BF16 ? 2 : 4);
  return r;
}
LatentCache c_cols(const LatentCache& c, int64_t i0) {
  LatentCache r = c;
  r.data = static_cast<const uint8_t*>(c.data) + i0 * (c.dtype == DType::BF16 ? 2 : 4);
  return r;
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[i & 7] += a[i] * b[i];
  float l0 = acc[0] + acc[4], l1 = acc[1] + acc[5], l2 = acc[2] + acc[6], l3 = acc[3] + acc[7];
  return (l0 + l2) + (l1 + l3);
}

// Loops over a block's rows and vectors are unrolled: with a variable index left, GCC 12
// keeps the accumulator arrays in memory.
#define UNROLL _Pragma("GCC unroll 16")

FATHOM_AVX2_BEGIN
inline __m256 load8(const LatentCache& c, int64_t i) {
  if (c.dtype == DType::BF16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(c.data) + i));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  return _mm256_loadu_ps(static_cast<const float*>(c.data) + i);
}

float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
    s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = simd::hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

// Four cache rows per pass share each load of q.
void scores_avx2(const float* q, const LatentCache& c, int64_t T, int64_t dim, float* scores) {
  const int64_t d8 = dim & ~int64_t(7);
  int64_t t = 0;
  for (; t + 4 <= T; t += 4) {
    __m256 s[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < d8; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      UNROLL for (int r = 0; r < 4; ++r) s[r] = _mm256_fmadd_ps(qv, load8(c, (t + r) * c.stride + i), s[r]);
    }
    UNROLL for (int r = 0; r < 4; ++r) {
      float v = simd::hsum(s[r]);
      for (int64_t i = d8; i < dim; ++i) v += q[i] * load_elem(c, (t + r) * c.stride + i);
      scores[t + r] = v;
    }
  }
  for (; t < T; ++t) {
    __m256 s = _mm256_setzero_ps();
    for (int64_t i = 0; i < d8; i += 8) s = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8(c, t * c.stride + i), s);
    float v = simd::hsum(s);
    for (int64_t i = d8; i < dim; ++i) v += q[i] * load_elem(c, t * c.stride + i);
    scores[t] = v;
  }
}

// NV vectors of 8 columns at column i0 over all T rows, accumulators in registers.
template <int NV>
void wsum_cols(const float* p, const LatentCache& c, int64_t T, int64_t i0, float* out) {
  __m256 acc[NV];
  UNROLL for (int v = 0; v < NV; ++v) acc[v] = _mm256_setzero_ps();
  for (int64_t t = 0; t < T; ++t) {
    const __m256 pv = _mm256_set1_ps(p[t]);
    UNROLL for (int v = 0; v < NV; ++v) acc[v] = _mm256_fmadd_ps(pv, load8(c, t * c.stride + i0 + 8 * v), acc[v]);
  }
  UNROLL for (int v = 0; v < NV; ++v) _mm256_storeu_ps(out + i0 + 8 * v, acc[v]);
}

void weighted_sum_avx2(const float* p, const LatentCache& c, int64_t T, int64_t dim, float* out) {
  const int64_t d8 = dim & ~int64_t(7), d64 = dim & ~int64_t(63);
  // Column blocks of 64 keep 8 accumulators in registers across all T rows.
  for (int64_t i0 = 0; i0 < d64; i0 += 64) wsum_cols<8>(p, c, T, i0, out);
  switch ((d8 - d64) / 8) {
    case 7: wsum_cols<7>(p, c, T, d64, out); break;
    case 6: wsum_cols<6>(p, c, T, d64, out); break;
    case 5: wsum_cols<5>(p, c, T, d64, out); break;
    case 4: wsum_cols<4>(p, c, T, d64, out); break;
    case 3: wsum_cols<3>(p, c, T, d64, out); break;
    case 2: wsum_cols<2>(p, c, T, d64, out); break;
    case 1: wsum_cols<1>(p, c, T, d64, out); break;
    default: break;
  }
  for (int64_t i = d8; i < dim; ++i) {
    float s = 0;
    for (int64_t t = 0; t < T; ++t) s += p[t] * load_elem(c, t * c.stride + i);
    out[i] = s;
  }
}

// Two heads × four cache rows per pass (8 accumulators): each load of a cache row serves two
// heads, each load of q four rows. Per (head, row) the arithmetic is scores_avx2's: one
// 8-lane FMA chain over dim in order, hsum, then the scalar tail.
void scores_heads_avx2(const float* q, int64_t qs, int64_t nh, const LatentCache& c, int64_t T, int64_t dim,
                       float* scores, int64_t ss) {
  const int64_t d8 = dim & ~int64_t(7);
  // Chunks of cache rows that stay in L2 while every head pair passes over them.
  const int64_t chunk = std::max<int64_t>(4, ((128 << 10) / std::max<int64_t>(1, dim * 4)) & ~int64_t(3));
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t t1 = std::min(T, t0 + chunk), t4 = t0 + (t1 - t0) / 4 * 4;
    int64_t h = 0;
    for (; h + 2 <= nh; h += 2) {
      const float* qa = q + h * qs;
      const float* qb = qa + qs;
      for (int64_t t = t0; t < t4; t += 4) {
        __m256 a[4], b[4];
        UNROLL for (int r = 0; r < 4; ++r) a[r] = b[r] = _mm256_setzero_ps();
        for (int64_t i = 0; i < d8; i += 8) {
          const __m256 va = _mm256_loadu_ps(qa + i), vb = _mm256_loadu_ps(qb + i);
          UNROLL for (int r = 0; r < 4; ++r) {
            const __m256 cv = load8(c, (t + r) * c.stride + i);
            a[r] = _mm256_fmadd_ps(va, cv, a[r]);
            b[r] = _mm256_fmadd_ps(vb, cv, b[r]);
          }
        }
        UNROLL for (int r = 0; r < 4; ++r) {
          float va = simd::hsum(a[r]), vb = simd::hsum(b[r]);
          for (int64_t i = d8; i < dim; ++i) {
            const float cv = load_elem(c, (t + r) * c.stride + i);
            va += qa[i] * cv;
            vb += qb[i] * cv;
          }
          scores[h * ss + t + r] = va;
          scores[(h + 1) * ss + t + r] = vb;
        }
      }
    }
    for (; h < nh; ++h) scores_avx2(q + h * qs, c_rows(c, t0), t4 - t0, dim, scores + h * ss + t0);
    // Rows past the last group of four, one at a time as scores_avx2 does.
    for (int64_t hh = 0; hh < nh && t4 < t1; ++hh) scores_avx2(q + hh * qs, c_rows(c, t4), t1 - t4, dim, scores + hh * ss + t4);
  }
}

// Two heads × 32 columns per pass (8 accumulators over all T rows): each load of a cache
// row serves two heads. Per (head, column) the arithmetic is weighted_sum_avx2's.
void weighted_sum_heads_avx2(const float* p, int64_t ps, int64_t nh, const LatentCache& c, int64_t T, int64_t dim,
                             float* out, int64_t os) {
  const int64_t d32 = dim & ~int64_t(31);
  int64_t h = 0;
  for (; h + 2 <= nh; h += 2) {
    const float* pa = p + h * ps;
    const float* pb = pa + ps;
    for (int64_t i0 = 0; i0 < d32; i0 += 32) {
      __m256 a[4], b[4];
      UNROLL for (int v = 0; v < 4; ++v) a[v] = b[v] = _mm256_setzero_ps();
      for (int64_t t = 0; t < T; ++t) {
        const __m256 wa = _mm256_set1_ps(pa[t]), wb = _mm256_set1_ps(pb[t]);
        UNROLL for (int v = 0; v < 4; ++v) {
          const __m256 cv = load8(c, t * c.stride + i0 + 8 * v);
          a[v] = _mm256_fmadd_ps(wa, cv, a[v]);
          b[v] = _mm256_fmadd_ps(wb, cv, b[v]);
        }
      }
      UNROLL for (int v = 0; v < 4; ++v) {
        _mm256_storeu_ps(out + h * os + i0 + 8 * v, a[v]);
        _mm256_storeu_ps(out + (h + 1) * os + i0 + 8 * v, b[v]);
      }
    }
  }
  for (; h < nh; ++h) weighted_sum_avx2(p + h * ps, c, T, dim, out + h * os);
  // Columns past the last multiple of 32 for the paired heads (columns are independent).
  for (int64_t hh = 0; hh < nh / 2 * 2 && d32 < dim; ++hh)
    weighted_sum_avx2(p + hh * ps, c_cols(c, d32), T, dim - d32, out + hh * os + d32);
}
FATHOM_AVX2_END

void check_cache(const LatentCache& c) {
  FATHOM_CHECK(c.dtype == DType::F32 || c.dtype == DType::BF16, "latent cache dtype {} (F32 or BF16 only)",
               dtype_name(c.dtype));
}

}  // namespace

float dot(const float* a, const float* b, int64_t n) {
  return cpu_has_avx2() ? dot_avx2(a, b, n) : dot_scalar(a, b, n);
}

void axpy(float a, const float* x, float* y, int64_t n) {
  if (cpu_has_avx2()) return axpy_avx2(a, x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void latent_scores(const float* q, const LatentCache& c, int64_t T, int64_t dim, float* scores) {
  check_cache(c);
  if (cpu_has_avx512()) return avx512::latent_scores_heads(q, dim, 1, c, T, dim, scores, T);
  if (cpu_has_avx2()) return scores_avx2(q, c, T, dim, scores);
  for (int64_t t = 0; t < T; ++t) {
    float s = 0;
    for (int64_t i = 0; i < dim; ++i) s += q[i] * load_elem(c, t * c.stride + i);
    scores[t] = s;
  }
}

void latent_weighted_sum(const float* p, const LatentCache& c, int64_t T, int64_t dim, float* out) {
  check_cache(c);
  if (cpu_has_avx2()) return weighted_sum_avx2(p, c, T, dim, out);
  for (int64_t i = 0; i < dim; ++i) out[i] = 0;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < dim; ++i) out[i] += p[t] * load_elem(c, t * c.stride + i);
}

void latent_scores_heads(const float* q, int64_t qs, int64_t nh, const LatentCache& c, int64_t T, int64_t dim,
                         float* scores, int64_t ss) {
  check_cache(c);
  if (cpu_has_avx512()) return avx512::latent_scores_heads(q, qs, nh, c, T, dim, scores, ss);
  if (cpu_has_avx2()) return scores_heads_avx2(q, qs, nh, c, T, dim, scores, ss);
  for (int64_t h = 0; h < nh; ++h) latent_scores(q + h * qs, c, T, dim, scores + h * ss);
}

void latent_weighted_sum_heads(const float* p, int64_t ps, int64_t nh, const LatentCache& c, int64_t T,
                               int64_t dim, float* out, int64_t os) {
  check_cache(c);
  if (cpu_has_avx512()) return avx512::latent_weighted_sum_heads(p, ps, nh, c, T, dim, out, os);
  if (cpu_has_avx2()) return weighted_sum_heads_avx2(p, ps, nh, c, T, dim, out, os);
  for (int64_t h = 0; h < nh; ++h) latent_weighted_sum(p + h * ps, c, T, dim, out + h * os);
}

}  // namespace fathom::cpu
#undef UNROLL
