// AVX-512 VNNI kernel for GGML block formats, bit-identical to ggml_matmul_scalar.cpp (and
// so to the AVX2 kernel). Prefill only: one row of x runs AVX2's fused decode kernels.
//
// A panel of weight rows is decoded once (the AVX2 decoders), then 4 × 2 register tiles (rows
// of x × weight rows) run over it, 64 bytes at a time: vpmaddubsw gives the int16 pair sums
// and vpdpwssd multiplies them by the sub-block scales and adds them to the int32 lanes, where
// AVX2 spends vpmaddubsw, vpmaddwd and vpaddd per 32 bytes. The register's two halves hold two
// 32-value groups at the same lane positions; their sums are added (exactly, in int32) before
// the block's float steps, which are those of ggml_decode.h. 32-value formats take two blocks
// per register and finish them one after the other.
//
// Signed quants (the formats without mins): AVX-512 has no vpsignb, so |w| goes into vpmaddubsw
// and w's sign onto x by a masked subtract, the same products as AVX2's vpsignb pair.
#include <algorithm>
#include <vector>

#include "backend/cpu/ggml_decode.h"
#include "backend/cpu/kernels.h"

#include "backend/cpu/simd_vnni.h"

// Every loop over tile rows, columns and chunks is unrolled: with a variable index left,
// GCC 12 keeps the accumulator arrays in memory.
#define UNROLL _Pragma("GCC unroll 16")

FATHOM_VNNI_BEGIN
namespace fathom::cpu::detail {
namespace {

inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// One tile's view of the panel and of x: weight rows r0.. of the panel, rows i0.. of x.
struct TileArgs {
  const DecodedBlock* dec;  // [panel rows, nblk]
  int64_t nblk;
  const int8_t* xq;         // [m, K] from row i0
  const float* xd;          // [m, nblk] from row i0
  const int16_t* xs;        // [m, K/16] from row i0
  int64_t K;
  float* y;                 // y[i0, column of panel row r0]
  int64_t ldy;              // N
};

// The sub-block scale of int16 lane l in 64-byte chunk h of a 256-value block: group 2h in the
// low half, 2h + 1 in the high one, lane j of a group taking sc[2g + j/4] (ggml_decode.h).
inline __m512i scale_index(int h) {
  alignas(64) int16_t idx[32];
  for (int l = 0; l < 32; ++l) idx[l] = int16_t(4 * h + l / 8);
  return _mm512_load_si512(idx);
}

// A 32-value block's mins (lane 0 only, ggml_decode.h): the other lanes keep their zero
// factor even when the block's is infinite.
inline __m256 min_scale32(float s) { return _mm256_setr_ps(s, 0, 0, 0, 0, 0, 0, 0); }

// RI rows of x × RC weight rows, over every block of the panel.
template <bool kMins, int nv, int RI, int RC>
void tile(const TileArgs& a, int64_t r0) {
  constexpr bool kSigned = !kMins;  // ggml_decode.h: exactly the formats with mins are unsigned
  const __m512i zero = _mm512_setzero_si512();
  __m256 f[RI][RC], mf[RI][RC];
  UNROLL for (int i = 0; i < RI; ++i)
    UNROLL for (int c = 0; c < RC; ++c) f[i][c] = mf[i][c] = _mm256_setzero_ps();
  // One 64-byte chunk: weights w[c], x at xoff in every row (only its first 32 bytes where
  // !full: a lone last 32-value block, not read past the row); sums into S.
  auto chunk = [&](const __m512i (&w)[RC], const __m512i (&sc)[RC], int64_t xoff, bool full, __m512i (&S)[RI][RC])
      __attribute__((always_inline)) {
    __m512i wa[RC];
    __mmask64 neg[RC];
    UNROLL for (int c = 0; c < RC; ++c) {
      if constexpr (kSigned) neg[c] = _mm512_movepi8_mask(w[c]), wa[c] = _mm512_abs_epi8(w[c]);
      else wa[c] = w[c];
    }
    UNROLL for (int i = 0; i < RI; ++i) {
      const int8_t* xp = a.xq + i * a.K + xoff;
      const __m512i x = full ? load64(xp) : _mm512_maskz_loadu_epi8(0xffffffffull, xp);
      UNROLL for (int c = 0; c < RC; ++c) {
        const __m512i xx = kSigned ? _mm512_mask_sub_epi8(x, neg[c], zero, x) : x;
        S[i][c] = _mm512_dpwssd_epi32(S[i][c], _mm512_maddubs_epi16(wa[c], xx), sc[c]);
      }
    }
  };
  // The float steps of block kb for pair (i, c) from its 8 int32 lane sums.
  auto finish = [&](int i, int c, const DecodedBlock& b, int64_t kb, __m256i s8) __attribute__((always_inline)) {
    const float dx = a.xd[i * a.nblk + kb];
    f[i][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8), _mm256_set1_ps(dx * b.d), f[i][c]);
    if constexpr (kMins) {
      const int16_t* xs = a.xs + i * (a.K / 16) + kb * nv / 16;
      if constexpr (nv == 256) {
        const __m256i M = _mm256_madd_epi16(load32(b.mi), load32(xs));
        mf[i][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), _mm256_set1_ps(dx * b.dmin), mf[i][c]);
      } else {
        const __m256i M = _mm256_setr_epi32(int32_t(b.mi[0]) * xs[0] + int32_t(b.mi[1]) * xs[1], 0, 0, 0, 0, 0, 0, 0);
        mf[i][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), min_scale32(dx * b.dmin), mf[i][c]);
      }
    }
  };
  const DecodedBlock* rows[RC];
  UNROLL for (int c = 0; c < RC; ++c) rows[c] = a.dec + (r0 + c) * a.nblk;
  if constexpr (nv == 256) {
    const __m512i idx[4] = {scale_index(0), scale_index(1), scale_index(2), scale_index(3)};
    for (int64_t kb = 0; kb < a.nblk; ++kb) {
      __m512i S[RI][RC];
      UNROLL for (int i = 0; i < RI; ++i)
        UNROLL for (int c = 0; c < RC; ++c) S[i][c] = zero;
      UNROLL for (int h = 0; h < 4; ++h) {
        __m512i w[RC], sc[RC];
        UNROLL for (int c = 0; c < RC; ++c) {
          const DecodedBlock& b = rows[c][kb];
          w[c] = load64(b.q + 64 * h);
          sc[c] = _mm512_permutexvar_epi16(idx[h], _mm512_castsi256_si512(load32(b.sc)));
        }
        chunk(w, sc, kb * 256 + 64 * h, true, S);
      }
      UNROLL for (int i = 0; i < RI; ++i)
        UNROLL for (int c = 0; c < RC; ++c)
          finish(i, c, rows[c][kb], kb,
                 _mm256_add_epi32(_mm512_castsi512_si256(S[i][c]), _mm512_extracti64x4_epi64(S[i][c], 1)));
    }
  } else {
    // 32-value blocks have sc = 1 (ggml_decode.h): blocks kb and kb + 1 share a register.
    const __m512i one = _mm512_set1_epi16(1);
    __m512i sc[RC];
    UNROLL for (int c = 0; c < RC; ++c) sc[c] = one;
    for (int64_t kb = 0; kb < a.nblk; kb += 2) {
      const bool pair = kb + 1 < a.nblk;
      __m512i S[RI][RC], w[RC];
      UNROLL for (int i = 0; i < RI; ++i)
        UNROLL for (int c = 0; c < RC; ++c) S[i][c] = zero;
      UNROLL for (int c = 0; c < RC; ++c) {
        const __m512i lo = _mm512_zextsi256_si512(load32(rows[c][kb].q));
        w[c] = pair ? _mm512_inserti64x4(lo, load32(rows[c][kb + 1].q), 1) : lo;
      }
      chunk(w, sc, kb * 32, pair, S);
      UNROLL for (int i = 0; i < RI; ++i)
        UNROLL for (int c = 0; c < RC; ++c) {
          finish(i, c, rows[c][kb], kb, _mm512_castsi512_si256(S[i][c]));
          if (pair) finish(i, c, rows[c][kb + 1], kb + 1, _mm512_extracti64x4_epi64(S[i][c], 1));
        }
    }
  }
  UNROLL for (int i = 0; i < RI; ++i)
    UNROLL for (int c = 0; c < RC; ++c)
      a.y[i * a.ldy + r0 + c] = kMins ? simd::hsum(f[i][c]) - simd::hsum(mf[i][c]) : simd::hsum(f[i][c]);
}

template <DType t>
void run(const Job& job, int64_t n0, int64_t n1) {
  if (job.m == 1) return run_cols_ggml_avx2(job, n0, n1);
  constexpr bool kMins = ggml_mins(t);
  constexpr int nv = ggml_block(t)->values;
  constexpr size_t bb = ggml_block(t)->bytes;
  const WeightView& w = *job.w;
  const int64_t K = w.cols, N = w.rows, m = job.m, nblk = K / nv;
  const size_t rb = bb * size_t(nblk);
  const auto* data = static_cast<const uint8_t*>(w.data);
  // A panel of weight rows decoded once (~256 KiB, in L2), then every row of x over it.
  const int64_t panel = std::clamp<int64_t>((256 << 10) / (nblk * int64_t(sizeof(DecodedBlock))), 2, 64) / 2 * 2;
  thread_local std::vector<DecodedBlock> dec;  // [panel, nblk]
  if (dec.size() < size_t(panel * nblk)) dec.resize(size_t(panel * nblk));
  for (int64_t p0 = n0; p0 < n1; p0 += panel) {
    const int64_t pn = std::min(panel, n1 - p0);
    for (int64_t r = 0; r < pn; ++r) decode_blocks_avx2(t, data + size_t(p0 + r) * rb, nblk, &dec[size_t(r * nblk)]);
    for (int64_t i0 = 0; i0 < m;) {
      const int64_t ri = m - i0 >= 4 ? 4 : 1;
      const TileArgs a{dec.data(), nblk, job.qa.q + i0 * K, job.qa.d + i0 * nblk, job.qa.g16 + i0 * (K / 16), K,
                       job.y + i0 * N + p0, N};
      int64_t r = 0;
      for (; r + 2 <= pn; r += 2) ri == 4 ? tile<kMins, nv, 4, 2>(a, r) : tile<kMins, nv, 1, 2>(a, r);
      if (r < pn) ri == 4 ? tile<kMins, nv, 4, 1>(a, r) : tile<kMins, nv, 1, 1>(a, r);
      i0 += ri;
    }
  }
}

}  // namespace

void run_cols_ggml_vnni(const Job& job, int64_t n0, int64_t n1) {
  dispatch_ggml(
      job.w->dtype, [&](auto t) { run<t.value>(job, n0, n1); }, [&] { fail_no_kernel("ggml avx-512", job.w->dtype); });
}

}  // namespace fathom::cpu::detail
FATHOM_VNNI_END
#undef UNROLL
