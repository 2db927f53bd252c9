#pragma once
// Target region of the AVX-512 VNNI translation units, like FATHOM_AVX2_BEGIN/END in simd.h
// (include last; only fathom's own functions get the target).
#include "backend/cpu/simd.h"

// GCC 12's AVX-512 conversion intrinsics start from _mm512_undefined_*, which its
// -Wmaybe-uninitialized / -Wuninitialized report at every inlined use.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#if defined(__clang__)
#define FATHOM_VNNI_BEGIN                                                                                    \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,bmi2\"))), \
          apply_to = function)")
#define FATHOM_VNNI_END _Pragma("clang attribute pop")
#else
#define FATHOM_VNNI_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,bmi2\")")
#define FATHOM_VNNI_END _Pragma("GCC pop_options")
#endif
