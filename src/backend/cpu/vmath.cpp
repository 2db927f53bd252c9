#include "backend/cpu/vmath.h"

#include <cmath>
#include <cstring>

#include "backend/cpu/matmul.h"
#include "backend/cpu/simd.h"

namespace fathom::cpu {
namespace {

// exp(x) = 2^n · exp(r), n = round(x / ln 2), r = x - n·ln 2 in two steps (C1 + C2 = ln 2,
// C1 exact in few bits), exp(r) = 1 + r + r²·P(r). Inputs are clamped to where exp is
// neither 0 nor infinite in float; 2^n goes in as two factors so that n from -150 to 128
// needs no special case (the second product rounds to a denormal, 0 or infinity as expf does).
constexpr float kLo = -104.0f, kHi = 88.75f;
constexpr float kLog2e = 1.44269504088896341f, kC1 = 0.693359375f, kC2 = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

float pow2(float n) {  // n integral in [-75, 64]
  const int32_t bits = (int32_t(n) + 127) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

float exp_lane(float x) {
  if (std::isnan(x)) return x;
  x = kLo > x ? kLo : x;  // operand order as the vector max/min below
  x = kHi < x ? kHi : x;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kC1, x);
  r = std::fma(n, -kC2, r);
  float p = kP0;
  p = std::fma(p, r, kP1);
  p = std::fma(p, r, kP2);
  p = std::fma(p, r, kP3);
  p = std::fma(p, r, kP4);
  p = std::fma(p, r, kP5);
  const float y = std::fma(p, r * r, r) + 1.0f;
  const float n2 = std::floor(n * 0.5f), n1 = n - n2;
  return y * pow2(n1) * pow2(n2);
}

namespace detail {

void softmax_scalar(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  float lane[8] = {};
  const int64_t n8 = n & ~int64_t(7);
  for (int64_t i = 0; i < n8; i += 8)
    for (int j = 0; j < 8; ++j) lane[j] += (x[i + j] = exp_lane(x[i + j] - m));
  // simd::hsum's order.
  float s = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
  for (int64_t i = n8; i < n; ++i) s += (x[i] = exp_lane(x[i] - m));
  const float inv = 1.0f / s;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void swiglu_scalar(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + exp_lane(-g[i])) * u[i];
}

}  // namespace detail
}  // namespace fathom::cpu

FATHOM_AVX2_BEGIN
namespace fathom::cpu {
namespace {

__m256 pow2_avx2(__m256 n) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23));
}

// exp_lane in 8 lanes. A NaN lane stays NaN: max/min return their second operand then.
__m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_set1_ps(kLo), x);
  x = _mm256_min_ps(_mm256_set1_ps(kHi), x);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kC1), x);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(-kC2), r);
  __m256 p = _mm256_set1_ps(kP0);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP1));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP5));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
  const __m256 n2 = _mm256_floor_ps(_mm256_mul_ps(n, _mm256_set1_ps(0.5f))), n1 = _mm256_sub_ps(n, n2);
  return _mm256_mul_ps(_mm256_mul_ps(y, pow2_avx2(n1)), pow2_avx2(n2));
}

void softmax_avx2(float* x, int64_t n) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
  const __m256 mv = _mm256_set1_ps(m);
  __m256 acc = _mm256_setzero_ps();
  const int64_t n8 = n & ~int64_t(7);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
    _mm256_storeu_ps(x + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float s = simd::hsum(acc);
  for (int64_t i = n8; i < n; ++i) s += (x[i] = exp_lane(x[i] - m));
  const float inv = 1.0f / s;
  const __m256 iv = _mm256_set1_ps(inv);
  for (int64_t i = 0; i < n8; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
  for (int64_t i = n8; i < n; ++i) x[i] *= inv;
}

void swiglu_avx2(float* g, const float* u, int64_t n) {
  const int64_t n8 = n & ~int64_t(7);
  const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < n8; i += 8) {
    const __m256 v = _mm256_loadu_ps(g + i);
    const __m256 s = _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_xor_ps(v, neg))));
    _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
  }
  detail::swiglu_scalar(g + n8, u + n8, n - n8);
}

}  // namespace
}  // namespace fathom::cpu
FATHOM_AVX2_END

namespace fathom::cpu {

void softmax(float* x, int64_t n) {
  if (cpu_has_avx2()) return softmax_avx2(x, n);
  detail::softmax_scalar(x, n);
}

void swiglu(float* g, const float* u, int64_t n) {
  if (cpu_has_avx2()) return swiglu_avx2(g, u, n);
  detail::swiglu_scalar(g, u, n);
}

}  // namespace fathom::cpu
