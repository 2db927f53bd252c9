#pragma once
// Helpers shared by the AVX2 translation units. Include after every other header and
// inside FATHOM_AVX2_BEGIN/END so that only fathom's own functions get the AVX2 target
// (inline functions from other headers must stay baseline x86-64).
#include <immintrin.h>

#if defined(__clang__)
#define FATHOM_AVX2_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx2,fma,f16c\"))), apply_to = function)")
#define FATHOM_AVX2_END _Pragma("clang attribute pop")
#else
#define FATHOM_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma,f16c\")")
#define FATHOM_AVX2_END _Pragma("GCC pop_options")
#endif

FATHOM_AVX2_BEGIN
namespace fathom::cpu::simd {

// Lane sum in the order of detail::hsum8: ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)).
static inline float hsum(__m256 v) {
  __m128 l = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  l = _mm_add_ps(l, _mm_movehl_ps(l, l));
  return _mm_cvtss_f32(_mm_add_ss(l, _mm_shuffle_ps(l, l, 1)));
}

// Largest of the 8 lanes (of non-NaN lanes: the quantizers' amax).
static inline float hmax(__m256 v) {
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  return _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
}

// Sum of the 8 int32 lanes.
static inline int32_t hsum_epi32(__m256i v) {
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  return _mm_cvtsi128_si32(_mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1)));
}

// 32 values of x times id, rounded to nearest even, stored in order as int8 at q (the
// activation quantizers' inner step); the int32 values stay in i32 for their sums.
static inline void quantize32(const float* x, __m256 id, int8_t* q, __m256i i32[4]) {
  for (int j = 0; j < 4; ++j)
    i32[j] = _mm256_cvtps_epi32(
        _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * j), id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  // packs interleave 128-bit lanes; the permute restores element order.
  const __m256i i8 = _mm256_packs_epi16(_mm256_packs_epi32(i32[0], i32[1]), _mm256_packs_epi32(i32[2], i32[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(i8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// Mask selecting the first n (0..8) lanes.
static inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace fathom::cpu::simd
FATHOM_AVX2_END
