// AVX2 int8 kernels for Q8_0 and Q4_0 weights against activations quantized to Q8 blocks:
// vpmaddubsw/vpmaddwd give exact int32 block sums, which are converted, scaled by d_w·d_x and
// accumulated in 8 f32 lanes per output. The activation quantizer lives here too.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/row_tiles.h"
#include "backend/cpu/simd.h"

FATHOM_AVX2_BEGIN
namespace fathom::cpu {
namespace {

using detail::Job;
using detail::kQBlock;

// Both formats go two blocks at a time against activations pre-arranged per block pair
// (kernels.h, QActPair): a 256-bit [lo0|lo1] and [hi0|hi1] per side, so each vpmaddwd
// yields lanes 0..3 for block 2p and 4..7 for 2p+1, and one convert/scale/FMA covers two
// blocks.
//   Q4_0: unsigned nibbles straight into vpmaddubsw, the two halves summed in int16
//         (|·| ≤ 4·15·127), minus 8·Σx per block (corr).
//   Q8_0: |w| · (x signed by w) per half (|·| ≤ 2·128·127 each, so the halves are summed
//         after vpmaddwd, in int32).
struct PairTile {
  const uint8_t* w;            // first weight row of the tile, stride wstride
  size_t wstride;
  const detail::QActPair* x;   // [r, np] activation pairs of this tile
  int64_t nb, np;
  float* y;                    // y[i0, n0], stride ldy
  int64_t ldy;
};

// One weight row's blocks 2p and 2p+1 (zeros for a missing second block).
struct WPair {
  __m256i lo, hi;  // Q4: nibbles; Q8: |w| halves
  __m256i slo, shi;  // Q8: the signed halves (sign source)
  __m256 d;        // d[2p] ×4, d[2p+1] ×4
};

inline __m256 load_scale_pair(const uint8_t* b0, const uint8_t* b1) {
  uint16_t h0, h1 = 0;
  std::memcpy(&h0, b0, 2);
  if (b1) std::memcpy(&h1, b1, 2);
  const __m128 d01 = _mm_cvtph_ps(_mm_cvtsi32_si128(int(uint32_t(h0) | uint32_t(h1) << 16)));
  return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d01), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

template <bool Q4>
inline WPair load_pair(const uint8_t* blk, bool single) {
  WPair w;
  if constexpr (Q4) {
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
    const __m128i q1 = single ? _mm_setzero_si128() : _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 20));
    const __m256i qs = _mm256_set_m128i(q1, q0);
    const __m256i m4 = _mm256_set1_epi8(15);
    w.lo = _mm256_and_si256(qs, m4);
    w.hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), m4);
    w.d = load_scale_pair(blk, single ? nullptr : blk + 18);
  } else {
    const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 2));
    const __m256i q1 = single ? _mm256_setzero_si256() : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + 36));
    w.slo = _mm256_permute2x128_si256(q0, q1, 0x20);
    w.shi = _mm256_permute2x128_si256(q0, q1, 0x31);
    w.lo = _mm256_abs_epi8(w.slo);
    w.hi = _mm256_abs_epi8(w.shi);
    w.d = load_scale_pair(blk, single ? nullptr : blk + 34);
  }
  return w;
}

template <bool Q4, int R, int C>
void pair_tile(const PairTile& t) {
  constexpr size_t kPairBytes = Q4 ? 36 : 68;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 acc[R][C];
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  for (int64_t p = 0; p < t.np; ++p) {
    const bool single = 2 * p + 1 == t.nb;
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) {
      const uint8_t* blk = t.w + c * t.wstride + p * kPairBytes;
      _mm_prefetch(reinterpret_cast<const char*>(blk) + 1024, _MM_HINT_T0);  // decode streams from DRAM
      const WPair w = load_pair<Q4>(blk, single);
      _Pragma("GCC unroll 8")
      for (int r = 0; r < R; ++r) {
        const detail::QActPair& x = t.x[r * t.np + p];
        const __m256i lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.lo));
        const __m256i hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(x.hi));
        __m256i p32;
        if constexpr (Q4) {
          const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(w.lo, lo), _mm256_maddubs_epi16(w.hi, hi));
          p32 = _mm256_sub_epi32(_mm256_madd_epi16(p16, ones), _mm256_load_si256(reinterpret_cast<const __m256i*>(x.corr)));
        } else {
          p32 = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(w.lo, _mm256_sign_epi8(lo, w.slo)), ones),
                                 _mm256_madd_epi16(_mm256_maddubs_epi16(w.hi, _mm256_sign_epi8(hi, w.shi)), ones));
        }
        const __m256 s = _mm256_mul_ps(w.d, _mm256_load_ps(x.d));
        acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p32), s, acc[r][c]);
      }
    }
  }
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) t.y[r * t.ldy + c] = simd::hsum(acc[r][c]);
}

// GEMM tile, the fastest of 2×4..4×3 measured at N=1408, K=2048, m=512 (some accumulators
// spill, which costs less than reloading activations for fewer rows).
constexpr int kR = 4, kC = 3;
// With one row of x left (decode), one weight row at a time: a single sequential stream
// keeps the hardware prefetcher ahead, where 4 interleaved 2 KiB rows measured 2× slower.
constexpr int kGemvC = 1;
constexpr int kCGemv = kC > 4 ? kC : 4;  // table width (columns per tile up to this)

template <bool Q4>
void run_quant(const Job& job, int64_t n0, int64_t n1) {
  static constexpr auto table = detail::row_tile_table<kR, kCGemv>([]<int R, int C>() { return &pair_tile<Q4, R, C>; });
  const WeightView& w = *job.w;
  const int64_t N = w.rows, nb = w.cols / kQBlock, np = (nb + 1) / 2;
  const size_t rb = w.row_bytes();
  detail::run_row_tiles<kR, kC, kGemvC, kCGemv>(job, n0, n1, rb, table, [&](int64_t i0, int64_t c0) {
    return PairTile{w.row(c0), rb, job.qa.pairs + i0 * np, nb, np, job.y + i0 * N + c0, N};
  });
}

}  // namespace

void detail::run_cols_quant_avx2(const Job& job, int64_t n0, int64_t n1) {
  switch (job.w->dtype) {
    case DType::Q8_0: return run_quant<false>(job, n0, n1);
    case DType::Q4_0: return run_quant<true>(job, n0, n1);
    default: detail::fail_no_kernel("AVX2 int8", job.w->dtype);
  }
}

void detail::build_act_pairs(const int8_t* q, const float* d, int64_t nb, QActPair* out) {
  for (int64_t p = 0; p < (nb + 1) / 2; ++p) {
    QActPair& o = out[p];
    for (int half = 0; half < 2; ++half) {
      const int64_t b = 2 * p + half;
      const bool have = b < nb;
      int32_t sum = 0;
      for (int e = 0; e < 16; ++e) {
        o.lo[16 * half + e] = have ? q[b * kQBlock + e] : 0;
        o.hi[16 * half + e] = have ? q[b * kQBlock + 16 + e] : 0;
      }
      for (int e = 0; e < kQBlock && have; ++e) sum += q[b * kQBlock + e];
      for (int j = 0; j < 4; ++j) {
        o.d[4 * half + j] = have ? d[b] : 0.0f;
        o.corr[4 * half + j] = j == 0 ? 8 * sum : 0;
      }
    }
  }
}

// Same arithmetic as quantize_act_row_scalar: amax, d = amax/127, q = rint(x * (1/d)).
void detail::quantize_act_row_avx2(const float* x, int64_t K, int8_t* q, float* d, int32_t* sums) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < K / kQBlock; ++b) {
    const float* xb = x + b * kQBlock;
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + 8 * j)));
    const float db = simd::hmax(amax) / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    d[b] = db;
    __m256i i32[4];
    simd::quantize32(xb, _mm256_set1_ps(id), q + b * kQBlock, i32);
    if (sums)  // |x·id| ≤ 127 after rounding, so the packs never saturated: Σ of the int32s
      sums[b] = simd::hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i32[0], i32[1]), _mm256_add_epi32(i32[2], i32[3])));
  }
}

}  // namespace fathom::cpu
FATHOM_AVX2_END
