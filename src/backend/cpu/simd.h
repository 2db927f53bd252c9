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

// Mask selecting the first n (0..8) lanes.
static inline __m256i first_lanes(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace fathom::cpu::simd
FATHOM_AVX2_END
