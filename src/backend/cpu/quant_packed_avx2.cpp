// AVX2 kernel for Packed16 Q8_0/Q4_0 weights (layout in packed.h): the VNNI kernel's
// arithmetic with vpmaddubsw + vpmaddwd in place of vpdpbusd. A group's 16 outputs are two
// 256-bit halves of 8 int32 lanes; each lane gets the exact int32 Σ w·x of its output's block,
// then the same convert, scale product and FMA as the VNNI kernel and the scalar mirror, so
// all three give the same bits.
//   Q4_0: nibbles (0..15) × x: a vpmaddubsw lane is ≤ 2·15·127, and a block's 8 of them per
//         lane sum to ≤ 30480 in int16, so one vpmaddwd per block finishes the sums (the
//         -8·Σx offset comes in through the start value, as in the VNNI kernel).
//   Q8_0: the stored byte is w + 128; w = byte ^ 0x80, and |w| × (x signed by w) keeps each
//         vpmaddubsw lane ≤ 2·128·127, widened to int32 per step. The sum starts at 0 (no
//         offset left).

#include "backend/cpu/packed_tiles.h"
#include "backend/cpu/simd.h"

// Every loop over rows, groups and halves is unrolled: with a variable index left, GCC 12
// keeps the accumulator arrays in memory. The steps go two at a time (STEPS): fully unrolled,
// GCC hoists all of a block's loads and spills with 16 registers (one-core GEMV measured
// 15 GB/s that way, 28 GB/s two steps at a time; GEMM 110 -> 118 GFLOP/s at q8_0).
#define UNROLL _Pragma("GCC unroll 16")
#define STEPS _Pragma("GCC unroll 2")

FATHOM_AVX2_BEGIN
namespace fathom::cpu {
namespace {

using detail::Job;
using detail::kQBlock;
using detail::PackedTile;

inline __m256i bcast4(const int8_t* p) { return _mm256_set1_epi32(detail::act4(p)); }

// R activation rows × G groups of 16 outputs (2 halves of 8).
template <bool Q4, int R, int G>
void tile(const PackedTile& t) {
  constexpr int S = Q4 ? 4 : 8;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][G][2];
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int g = 0; g < G; ++g)
      UNROLL for (int h = 0; h < 2; ++h) acc[r][g][h] = _mm256_setzero_ps();
  // A GEMV takes a pair of blocks per iteration and reads their scales after both blocks'
  // quants, in address order (see the VNNI kernel).
  constexpr int U = R * G == 1 ? 2 : 1;
  auto block = [&](int64_t b, __m256i (&sum)[R][G][2]) __attribute__((always_inline)) {  // int32 block sums
    const uint8_t* q = t.quants(b);
    if constexpr (Q4) {
      const __m256i m4 = _mm256_set1_epi8(15);
      __m256i p16[R][G][2];
      UNROLL for (int r = 0; r < R; ++r)
        UNROLL for (int g = 0; g < G; ++g)
          UNROLL for (int h = 0; h < 2; ++h) p16[r][g][h] = _mm256_setzero_si256();
      STEPS for (int s = 0; s < S; ++s) {
        __m256i lo[G][2], hi[G][2];
        UNROLL for (int g = 0; g < G; ++g)
          UNROLL for (int h = 0; h < 2; ++h) {
            const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(q + g * t.gstride + 64 * s + 32 * h));
            lo[g][h] = _mm256_and_si256(v, m4);
            hi[g][h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          }
        UNROLL for (int r = 0; r < R; ++r) {
          const int8_t* x = t.xq + r * t.K + b * kQBlock + 4 * s;
          const __m256i xl = bcast4(x), xh = bcast4(x + 16);
          UNROLL for (int g = 0; g < G; ++g)
            UNROLL for (int h = 0; h < 2; ++h)
              p16[r][g][h] = _mm256_add_epi16(p16[r][g][h], _mm256_add_epi16(_mm256_maddubs_epi16(lo[g][h], xl),
                                                                              _mm256_maddubs_epi16(hi[g][h], xh)));
        }
      }
      UNROLL for (int r = 0; r < R; ++r) {
        const __m256i c = _mm256_set1_epi32(t.ncorr[r * t.geo.nb + b]);
        UNROLL for (int g = 0; g < G; ++g)
          UNROLL for (int h = 0; h < 2; ++h) sum[r][g][h] = _mm256_add_epi32(c, _mm256_madd_epi16(p16[r][g][h], ones));
      }
    } else {
      const __m256i flip = _mm256_set1_epi8(int8_t(0x80));
      UNROLL for (int r = 0; r < R; ++r)
        UNROLL for (int g = 0; g < G; ++g)
          UNROLL for (int h = 0; h < 2; ++h) sum[r][g][h] = _mm256_setzero_si256();
      STEPS for (int s = 0; s < S; ++s) {
        __m256i sw[G][2], aw[G][2];  // signed weights, |w|
        UNROLL for (int g = 0; g < G; ++g)
          UNROLL for (int h = 0; h < 2; ++h) {
            sw[g][h] = _mm256_xor_si256(
                _mm256_load_si256(reinterpret_cast<const __m256i*>(q + g * t.gstride + 64 * s + 32 * h)), flip);
            aw[g][h] = _mm256_abs_epi8(sw[g][h]);
          }
        UNROLL for (int r = 0; r < R; ++r) {
          const __m256i x = bcast4(t.xq + r * t.K + b * kQBlock + 4 * s);
          UNROLL for (int g = 0; g < G; ++g)
            UNROLL for (int h = 0; h < 2; ++h) {
              const __m256i p = _mm256_maddubs_epi16(aw[g][h], _mm256_sign_epi8(x, sw[g][h]));
              sum[r][g][h] = _mm256_add_epi32(sum[r][g][h], _mm256_madd_epi16(p, ones));
            }
        }
      }
    }
  };
  auto finish = [&](int64_t b, __m256i (&sum)[R][G][2]) __attribute__((always_inline)) {
    const uint8_t* sc = t.scales(b);
    __m256 ws[G][2];
    UNROLL for (int g = 0; g < G; ++g)
      UNROLL for (int h = 0; h < 2; ++h)
        ws[g][h] = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(sc + g * t.gstride + 16 * h)));
    UNROLL for (int r = 0; r < R; ++r) {
      const __m256 d = _mm256_set1_ps(t.xd[r * t.geo.nb + b]);
      UNROLL for (int g = 0; g < G; ++g)
        UNROLL for (int h = 0; h < 2; ++h)
          acc[r][g][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[r][g][h]), _mm256_mul_ps(ws[g][h], d), acc[r][g][h]);
    }
  };
  int64_t b = 0;
  for (; b + U <= t.geo.nb; b += U) {
    __m256i sum[U][R][G][2];
    UNROLL for (int u = 0; u < U; ++u) block(b + u, sum[u]);
    UNROLL for (int u = 0; u < U; ++u) finish(b + u, sum[u]);
  }
  if (b < t.geo.nb) {  // GEMV over an odd number of blocks
    __m256i sum[R][G][2];
    block(b, sum);
    finish(b, sum);
  }
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int g = 0; g < G; ++g)
      UNROLL for (int h = 0; h < 2; ++h) {
        float* y = t.y + r * t.ldy + g * kPackRows + 8 * h;
        const int n = g == G - 1 ? t.last_cols - 8 * h : 8;
        if (n >= 8) _mm256_storeu_ps(y, acc[r][g][h]);
        else if (n > 0) _mm256_maskstore_ps(y, simd::first_lanes(n), acc[r][g][h]);
      }
}

// GEMM tiles (rows × groups of 16) with 16 registers: 2×1, 3×1 and 4×1 measured within 5%
// of each other at N=1408, K=2048, m=512 (1×2 and 2×2 slower); 2×1 spills least.
constexpr int kR = 2, kG = 1;

template <bool Q4, int R, int G>
struct Tile {
  static void run(const PackedTile& t) { tile<Q4, R, G>(t); }
};

}  // namespace

void detail::run_cols_packed_avx2(const Job& job, int64_t n0, int64_t n1) {
  detail::run_packed_kernel<Tile, kR, kG>(job, n0, n1, "AVX2 packed");
}

}  // namespace fathom::cpu
FATHOM_AVX2_END
#undef UNROLL
#undef STEPS
