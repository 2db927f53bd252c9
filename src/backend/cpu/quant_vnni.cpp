// AVX-512 VNNI kernel for Packed16 Q8_0/Q4_0 weights (layout in packed.h). Per block and
// 16 outputs: vpdpbusd over the block's steps (unsigned weight bytes × a broadcast of 4
// signed activation bytes), from a start of -offset·Σx, one convert, one multiply of the 16 weight
// scales by the activation scale, one FMA into the output's f32 accumulator. Every output
// follows that sequence in block order whatever the tile, so results do not depend on m.
#include <algorithm>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "backend/cpu/packed.h"
#include "backend/cpu/packed_tiles.h"

#include "backend/cpu/simd_vnni.h"

#define UNROLL _Pragma("GCC unroll 16")

FATHOM_VNNI_BEGIN
namespace fathom::cpu {
namespace {

using detail::Job;
using detail::kQBlock;
using detail::PackedTile;

inline __m512i bcast4(const int8_t* p) { return _mm512_set1_epi32(detail::act4(p)); }

// R activation rows × G groups of 16 outputs. With few independent sums (GEMV), each block's
// steps alternate between two int32 accumulators to hide vpdpbusd latency.
template <bool Q4, int R, int G>
void tile(const PackedTile& t) {
  // Every loop over rows, groups, steps and blocks is unrolled (UNROLL): with a variable
  // index left anywhere, GCC 12 keeps the accumulator arrays of the larger tiles in memory.
  constexpr int S = Q4 ? 4 : 8;
  constexpr int A = R * G <= 2 ? 2 : 1;
  // A GEMV takes a pair of blocks per iteration and reads the pair's scales after both
  // blocks' quants, so its loads follow the address order (packed.h). Reading block 2u's
  // scales first jumps over block 2u+1's quants, and a single core then streamed at ~65% of a
  // plain read loop instead of ~95% (the hardware prefetchers lose the stream).
  constexpr int U = R * G == 1 ? 2 : 1;
  const __m512i m4 = _mm512_set1_epi8(15);
  __m512 acc[R][G];
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int g = 0; g < G; ++g) acc[r][g] = _mm512_setzero_ps();
  // Block b of the tile's groups: quants at q + g·gstride, scales at sc + g·gstride.
  auto block = [&](int64_t b, int u, __m512i (&is)[U][A][R][G]) __attribute__((always_inline)) {
    const uint8_t* q = t.quants(b);
    // The sums start at -offset·Σx (the weights' offset, see packed.h).
    UNROLL for (int r = 0; r < R; ++r) {
      const __m512i c = _mm512_set1_epi32(t.ncorr[r * t.geo.nb + b]);
      UNROLL for (int g = 0; g < G; ++g) {
        is[u][0][r][g] = c;
        if constexpr (A == 2) is[u][1][r][g] = _mm512_setzero_si512();
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
            is[u][0][r][g] = _mm512_dpbusd_epi32(is[u][0][r][g], lo[g], xl);
            is[u][A - 1][r][g] = _mm512_dpbusd_epi32(is[u][A - 1][r][g], hi[g], xh);
          }
        }
      } else {
        __m512i v[G];
        UNROLL for (int g = 0; g < G; ++g) v[g] = _mm512_load_si512(q + g * t.gstride + 64 * s);
        UNROLL for (int r = 0; r < R; ++r) {
          const __m512i x = bcast4(t.xq + r * t.K + b * kQBlock + 4 * s);
          UNROLL for (int g = 0; g < G; ++g)
            is[u][s % A][r][g] = _mm512_dpbusd_epi32(is[u][s % A][r][g], v[g], x);
        }
      }
    }
  };
  auto finish = [&](int64_t b, int u, __m512i (&is)[U][A][R][G]) __attribute__((always_inline)) {
    const uint8_t* sc = t.scales(b);
    __m512 ws[G];
    UNROLL for (int g = 0; g < G; ++g)
      ws[g] = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(sc + g * t.gstride)));
    UNROLL for (int r = 0; r < R; ++r) {
      const __m512 d = _mm512_set1_ps(t.xd[r * t.geo.nb + b]);
      UNROLL for (int g = 0; g < G; ++g) {
        const __m512i sum = A == 2 ? _mm512_add_epi32(is[u][0][r][g], is[u][A - 1][r][g]) : is[u][0][r][g];
        acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws[g], d), acc[r][g]);
      }
    }
  };
  int64_t b = 0;
  for (; b + U <= t.geo.nb; b += U) {
    __m512i is[U][A][R][G];
    UNROLL for (int u = 0; u < U; ++u) block(b + u, u, is);
    UNROLL for (int u = 0; u < U; ++u) finish(b + u, u, is);
  }
  if (b < t.geo.nb) {  // GEMV over an odd number of blocks
    __m512i is[U][A][R][G];
    block(b, 0, is);
    finish(b, 0, is);
  }
  const __mmask16 tail = __mmask16((1u << t.last_cols) - 1);
  UNROLL for (int r = 0; r < R; ++r)
    UNROLL for (int g = 0; g < G; ++g)
      _mm512_mask_storeu_ps(t.y + r * t.ldy + g * kPackRows, g == G - 1 ? tail : __mmask16(0xFFFF), acc[r][g]);
}

// GEMM tiles (rows × groups of 16), the fastest measured at N=1408, K=2048, m=512 with
// every accumulator in a register.
constexpr int kR = 6, kG = 2;

template <bool Q4, int R, int G>
struct Tile {
  static void run(const PackedTile& t) { tile<Q4, R, G>(t); }
};

}  // namespace

void detail::run_cols_packed_vnni(const Job& job, int64_t n0, int64_t n1) {
  detail::run_packed_kernel<Tile, kR, kG>(job, n0, n1, "AVX-512 VNNI");
}

}  // namespace fathom::cpu
FATHOM_VNNI_END
#undef UNROLL
