// AVX-512 VNNI kernel for Packed16 Q8_0/Q4_0 weights (layout in packed.h). Per block and
// 16 outputs: vpdpbusd over the block's steps (unsigned weight bytes × a broadcast of 4
// signed activation bytes), from a start of -offset·Σx, one convert, one multiply of the 16 weight
// scales by the activation scale, one FMA into the output's f32 accumulator. Every output
// follows that sequence in block order whatever the tile, so results do not depend on m.
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed.h"

#include <immintrin.h>

// GCC 12's AVX-512 conversion intrinsics start from _mm512_undefined_*, which its
// -Wmaybe-uninitialized / -Wuninitialized report at every inlined use.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#if defined(__clang__)
#define FATHOM_VNNI_BEGIN                                                                                    \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c\"))), \
          apply_to = function)")
#define FATHOM_VNNI_END _Pragma("clang attribute pop")
#else
#define FATHOM_VNNI_BEGIN \
  _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c\")")
#define FATHOM_VNNI_END _Pragma("GCC pop_options")
#endif

#define UNROLL _Pragma("GCC unroll 16")

FATHOM_VNNI_BEGIN
namespace fathom::cpu {
namespace {

using detail::Job;
using detail::kQBlock;

struct Tile {
  const uint8_t* w;       // first group of the tile
  int64_t gstride;        // bytes between groups
  const int8_t* xq;       // activation row i0, stride K
  const float* xd;        // its block scales, stride nb
  const int32_t* ncorr;   // its -offset·Σq per block, stride nb
  int64_t K, nb, qbytes, unit;  // unit: bytes of a pair of blocks
  float* y;               // y[i0, 16·g0], stride ldy
  int64_t ldy;
  int last_cols;          // valid outputs of the tile's last group (1..16)
};

inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// R activation rows × G groups of 16 outputs. With few independent sums (GEMV), each block's
// steps alternate between two int32 accumulators to hide vpdpbusd latency.
template <bool Q4, int R, int G>
void tile(const Tile& t) {
  // Every loop over rows, groups and steps is unrolled (UNROLL): with a variable index left
  // anywhere, GCC 12 keeps the accumulator arrays of the larger tiles in memory.
  constexpr int S = Q4 ? 4 : 8;
  constexpr int A = R * G <= 2 ? 2 : 1;
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512 acc[R][G];
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  // Blocks come in pairs, each pair's quants followed by its scales (packed.h). Block b of
  // the tile's groups: quants at q + g·gstride, scales at sc + g·gstride.
  for (int64_t b = 0; b < t.nb; ++b) {
    const uint8_t* unit = t.w + (b >> 1) * t.unit;
    const uint8_t* q = unit + (b & 1) * t.qbytes;
    const uint8_t* sc = unit + 2 * t.qbytes + (b & 1) * kPackRows * 2;
    // The sums start at -offset·Σx (the weights' offset, see packed.h).
    __m512i is[A][R][G];
    UNROLL for (int r = 0; r < R; ++r) {
      const __m512i c = _mm512_set1_epi32(t.ncorr[r * t.nb + b]);
      UNROLL for (int g = 0; g < G; ++g) {
        is[0][r][g] = c;
        if constexpr (A == 2) is[1][r][g] = _mm512_setzero_si512();
      }
    }
    UNROLL for (int s = 0; s < S; ++s) {
      if constexpr (Q4) {
        __m512i lo[G], hi[G];
        UNROLL for (int g = 0; g < G; ++g) {
          const __m512i v = _mm512_load_si512(q + g * t.gstride + 64 * s);
          lo[g] = _mm512_and_si512(v, m4);
          hi[g] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        UNROLL for (int r = 0; r < R; ++r) {
          const int8_t* x = t.xq + r * t.K + b * kQBlock + 4 * s;
          const __m512i xl = bcast4(x), xh = bcast4(x + 16);
          UNROLL for (int g = 0; g < G; ++g) {
            is[0][r][g] = _mm512_dpbusd_epi32(is[0][r][g], lo[g], xl);
            is[A - 1][r][g] = _mm512_dpbusd_epi32(is[A - 1][r][g], hi[g], xh);
          }
        }
      } else {
        __m512i v[G];
        UNROLL for (int g = 0; g < G; ++g) v[g] = _mm512_load_si512(q + g * t.gstride + 64 * s);
        UNROLL for (int r = 0; r < R; ++r) {
          const __m512i x = bcast4(t.xq + r * t.K + b * kQBlock + 4 * s);
          UNROLL for (int g = 0; g < G; ++g) is[s % A][r][g] = _mm512_dpbusd_epi32(is[s % A][r][g], v[g], x);
        }
      }
    }
    __m512 ws[G];
    UNROLL for (int g = 0; g < G; ++g)
      ws[g] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sc + g * t.gstride)));
    UNROLL for (int r = 0; r < R; ++r) {
      const __m512 d = _mm512_set1_ps(t.xd[r * t.nb + b]);
      UNROLL for (int g = 0; g < G; ++g) {
        const __m512i sum = A == 2 ? _mm512_add_epi32(is[0][r][g], is[A - 1][r][g]) : is[0][r][g];
        acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws[g], d), acc[r][g]);
      }
    }
  }
  const __mmask16 tail = __mmask16((1u << t.last_cols) - 1);
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int g = 0; g < G; ++g)
      _mm512_mask_storeu_ps(t.y + r * t.ldy + g * kPackRows, g == G - 1 ? tail : __mmask16(0xFFFF), acc[r][g]);
}

// GEMM tiles (rows × groups of 16), the fastest measured at N=1408, K=2048, m=512 with
// every accumulator in a register.
template <bool Q4> struct Shape;
template <> struct Shape<false> { static constexpr int R = 6, G = 2; };
template <> struct Shape<true> { static constexpr int R = 6, G = 2; };
using TileFn = void (*)(const Tile&);

template <bool Q4, int R, int G, size_t... I>
constexpr std::array<TileFn, sizeof...(I)> make_table(std::index_sequence<I...>) {
  return {&tile<Q4, int(I / G) + 1, int(I % G) + 1>...};
}

template <bool Q4>
void run(const Job& job, int64_t n0, int64_t n1) {
  constexpr int kR = Shape<Q4>::R, kG = Shape<Q4>::G;
  static constexpr auto table = make_table<Q4, kR, kG>(std::make_index_sequence<kR * kG>{});
  const WeightView& w = *job.w;
  const PackedGeometry geo = packed_geometry(w.dtype, w.rows, w.cols);
  const int64_t K = w.cols, N = w.rows, m = job.m;
  const int64_t g0 = n0 / kPackRows, g1 = (n1 + kPackRows - 1) / kPackRows;
  // Weight panels of ~256 KiB stay in L2 while every row of x passes over them.
  const int64_t panel = std::max<int64_t>(kG, (256 << 10) / geo.group_bytes);
  const auto* base = static_cast<const uint8_t*>(w.data);
  for (int64_t p0 = g0; p0 < g1; p0 += panel) {
    const int64_t p1 = std::min(g1, p0 + panel);
    for (int64_t i0 = 0; i0 < m; i0 += kR) {
      const int r = int(std::min<int64_t>(kR, m - i0));
      // One row (decode): one group at a time keeps a single sequential stream.
      const int gmax = r == 1 ? 1 : kG;
      for (int64_t gg = p0; gg < p1; gg += gmax) {
        const int g = int(std::min<int64_t>(gmax, p1 - gg));
        const int64_t last_col0 = (gg + g - 1) * kPackRows;
        Tile t{base + gg * geo.group_bytes, geo.group_bytes, job.qa.q + i0 * K, job.qa.d + i0 * geo.nb,
               job.qa.ncorr + i0 * geo.nb, K, geo.nb, geo.quant_bytes, geo.unit_bytes, job.y + i0 * N + gg * kPackRows, N,
               int(std::min<int64_t>(kPackRows, std::min(n1, N) - last_col0))};
        table[(r - 1) * kG + (g - 1)](t);
      }
    }
  }
}

}  // namespace

void detail::run_cols_packed_vnni(const Job& job, int64_t n0, int64_t n1) {
  switch (job.w->dtype) {
    case DType::Q8_0: return run<false>(job, n0, n1);
    case DType::Q4_0: return run<true>(job, n0, n1);
    default: detail::fail_no_kernel("AVX-512 VNNI", job.w->dtype);
  }
}

}  // namespace fathom::cpu
FATHOM_VNNI_END
#undef UNROLL
