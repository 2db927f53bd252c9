// AVX-512 VNNI kernel for GGML block formats, bit-identical to ggml_matmul_scalar.cpp (and
// so to the AVX2 kernel).
//   decode (one row of x): Q4_K, Q5_K, Q6_K and IQ2_XXS dot straight from the block bytes; the
//     other formats run AVX2's decode kernels (as fast here as a panel, or faster);
//   prefill (more rows): every format, over decoded panels, as below.
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
#include "io/ggml_iq_grids.h"

#include "backend/cpu/simd_vnni.h"

// Every loop over tile rows, columns and chunks is unrolled: with a variable index left,
// GCC 12 keeps the accumulator arrays in memory.
#define UNROLL _Pragma("GCC unroll 16")

FATHOM_VNNI_BEGIN
// Internal linkage: compiled here for AVX-512, as in ggml_avx2.cpp for AVX2.
#include "backend/cpu/ggml_scales.h"

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

// Decode rows: the integers and FMAs of ggml_decode.h (as AVX2's fused kernels); the K-quants
// take 64 values per register.
inline __m512i bcast32(const uint8_t* p) { return _mm512_broadcast_i64x4(load32(p)); }
// int16 lanes 0..15 = lo, 16..31 = hi (shift counts, scale indices).
inline __m512i halves16(int lo, int hi) {
  return _mm512_inserti64x4(_mm512_set1_epi16(int16_t(lo)), _mm256_set1_epi16(int16_t(hi)), 1);
}
inline __m256i fold(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }
inline float f16(const uint8_t* p) { return _cvtsh_ss(u16(p)); }

// Q4_K / Q5_K: 32-byte group p holds sub-blocks 2p (low nibbles) and 2p + 1 (high), which
// meet x[64p, 64p + 64) as one register: the group broadcast to both halves, the high half
// shifted by 4.
template <bool kQ5>
inline void row_q45k(const uint8_t* b, const int8_t* xq, float dx, const int16_t* xs, __m256& f, __m256& mf) {
  const K4Scales k = k4_scales(b + 4);
  const __m512i sc8 = _mm512_castsi128_si512(
      _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(k.scales8()))));
  const __m512i m4 = _mm512_set1_epi8(0x0f), nib = halves16(0, 4);
  __m512i S = _mm512_setzero_si512();
  UNROLL for (int p = 0; p < 4; ++p) {
    __m512i q = _mm512_and_si512(_mm512_srlv_epi16(bcast32(b + (kQ5 ? 48 : 16) + 32 * p), nib), m4);
    if constexpr (kQ5) {  // fifth bit of sub-block s: bit s of each qh byte
      const __m512i hb = _mm512_srlv_epi16(bcast32(b + 16), halves16(2 * p, 2 * p + 1));
      q = _mm512_or_si512(q, _mm512_slli_epi16(_mm512_and_si512(hb, _mm512_set1_epi8(1)), 4));
    }
    const __m512i sc = _mm512_permutexvar_epi16(halves16(2 * p, 2 * p + 1), sc8);
    S = _mm512_dpwssd_epi32(S, _mm512_maddubs_epi16(q, load64(xq + 64 * p)), sc);
  }
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold(S)), _mm256_set1_ps(dx * f16(b)), f);
  const __m256i m32 = _mm256_cvtepu16_epi32(
      _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(k.mins8()))));
  const __m256i mdup = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));  // mi[2j] = mi[2j+1] = m[j]
  const __m256i M = _mm256_madd_epi16(mdup, load32(xs));
  mf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), _mm256_set1_ps(dx * f16(b + 2)), mf);
}

// Q6_K: half h's 64 low-nibble bytes give values [0, 64) (low nibbles) and [64, 128) (high),
// its 32 qh bytes their top two bits (bits 0-1 and 2-3 below, 4-5 and 6-7 above).
inline void row_q6k(const uint8_t* b, const int8_t* xq, float dx, const int16_t* xs, __m256& f, __m256& mf) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
  const __m512i sc = _mm512_castsi256_si512(sc16);
  const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
  __m512i S = _mm512_setzero_si512();
  UNROLL for (int h = 0; h < 2; ++h) {
    const __m512i L = load64(b + 64 * h), H = bcast32(b + 128 + 32 * h);
    const __m512i A = _mm512_or_si512(_mm512_and_si512(L, m4), _mm512_and_si512(_mm512_sllv_epi16(H, halves16(4, 2)), m30));
    const __m512i B = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                      _mm512_and_si512(_mm512_srlv_epi16(H, halves16(0, 2)), m30));
    S = _mm512_dpwssd_epi32(S, _mm512_maddubs_epi16(A, load64(xq + 128 * h)),
                            _mm512_permutexvar_epi16(scale_index(2 * h), sc));
    S = _mm512_dpwssd_epi32(S, _mm512_maddubs_epi16(B, load64(xq + 128 * h + 64)),
                            _mm512_permutexvar_epi16(scale_index(2 * h + 1), sc));
  }
  const __m256 dd = _mm256_set1_ps(dx * f16(b + 208));
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(fold(S)), dd, f);
  mf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_slli_epi16(sc16, 5), load32(xs))), dd, mf);
}

// IQ2_XXS: as AVX2's kernel (grid magnitudes into vpmaddubsw, the signs onto x), but each
// sub-block's 32 sign bits (four 7-bit fields plus even parity, as signs_from7) are built in a
// general register with pdep and negate x through a mask, where AVX2 spends four table loads
// and their inserts on vector ports.
inline void row_iq2xxs(const uint8_t* b, const int8_t* xq, float dx, __m256& f) {
  using ggml::iq::kIq2xxsGrid;
  const __m256i zero = _mm256_setzero_si256();
  __m256i S = zero;
  UNROLL for (int j = 0; j < 8; ++j) {
    const uint8_t* sub = b + 2 + 8 * j;
    const uint32_t aux = u32(sub + 4);
    const __m256i g = _mm256_setr_epi64x(int64_t(kIq2xxsGrid[sub[0]]), int64_t(kIq2xxsGrid[sub[1]]),
                                         int64_t(kIq2xxsGrid[sub[2]]), int64_t(kIq2xxsGrid[sub[3]]));
    uint32_t sg = _pdep_u32(aux, 0x7f7f7f7fu);  // byte k: field k
    uint32_t par = sg ^ (sg >> 4);              // bit 0 of byte k: its parity (bit 7 is 0)
    par ^= par >> 2;
    par ^= par >> 1;
    sg |= (par & 0x01010101u) << 7;
    const __m256i x = load32(xq + 32 * j);
    const __m256i p16 = _mm256_maddubs_epi16(g, _mm256_mask_sub_epi8(x, __mmask32(sg), zero, x));
    S = _mm256_dpwssd_epi32(S, p16, _mm256_set1_epi16(int16_t(2 * (aux >> 28) + 1)));
  }
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), _mm256_set1_ps(dx * (f16(b) * 0.125f)), f);
}

template <DType t>
constexpr bool has_row512 = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K || t == DType::IQ2_XXS;

template <DType t>
void run_rows(const Job& job, int64_t n0, int64_t n1) {
  constexpr size_t bb = ggml_block(t)->bytes;
  const int64_t nblk = job.w->cols / 256;
  const size_t rb = bb * size_t(nblk);
  const auto* data = static_cast<const uint8_t*>(job.w->data);
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = data + size_t(n) * rb;
    __m256 f = _mm256_setzero_ps(), mf = _mm256_setzero_ps();
    for (int64_t kb = 0; kb < nblk; ++kb) {
      const uint8_t* b = row + size_t(kb) * bb;
      const int8_t* xq = job.qa.q + kb * 256;
      const int16_t* xs = job.qa.g16 + kb * 16;
      if constexpr (t == DType::Q6_K) row_q6k(b, xq, job.qa.d[kb], xs, f, mf);
      else if constexpr (t == DType::IQ2_XXS) row_iq2xxs(b, xq, job.qa.d[kb], f);
      else row_q45k<t == DType::Q5_K>(b, xq, job.qa.d[kb], xs, f, mf);
    }
    job.y[n] = ggml_mins(t) ? simd::hsum(f) - simd::hsum(mf) : simd::hsum(f);
  }
}

inline __m512 pair_ps(float lo, float hi) {
  return _mm512_castpd_ps(
      _mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(lo)), _mm256_castps_pd(_mm256_set1_ps(hi)), 1));
}

// [lo256(a) + hi256(a) | lo256(b) + hi256(b)]: the 8 lane sums of two weight rows.
inline __m512i fold_pair(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_shuffle_i64x2(a, b, 0x44), _mm512_shuffle_i64x2(a, b, 0xee));
}

// RI rows of x × two weight rows (r0, r1; r1 == r0 for a lone last row), over every block of
// the panel. The two rows' float accumulators share a register (row r0 in the low half), so
// each block's convert, scale products and FMAs serve both; lane for lane they are the float
// steps of ggml_decode.h.
template <bool kMins, int nv, int RI>
void tile(const TileArgs& a, int64_t r0, int64_t r1) {
  constexpr bool kSigned = !kMins;  // ggml_decode.h: exactly the formats with mins are unsigned
  const __m512i zero = _mm512_setzero_si512();
  __m512 F[RI], MF[RI];
  UNROLL for (int i = 0; i < RI; ++i) F[i] = MF[i] = _mm512_setzero_ps();
  // One 64-byte chunk: weights w[c], x at xoff in every row (only its first 32 bytes where
  // !full: a lone last 32-value block, not read past the row); sums into S.
  auto chunk = [&](const __m512i (&w)[2], const __m512i (&sc)[2], int64_t xoff, bool full, __m512i (&S)[RI][2])
      __attribute__((always_inline)) {
    __m512i wa[2];
    __mmask64 neg[2];
    UNROLL for (int c = 0; c < 2; ++c) {
      if constexpr (kSigned) neg[c] = _mm512_movepi8_mask(w[c]), wa[c] = _mm512_abs_epi8(w[c]);
      else wa[c] = w[c];
    }
    UNROLL for (int i = 0; i < RI; ++i) {
      const int8_t* xp = a.xq + i * a.K + xoff;
      const __m512i x = full ? load64(xp) : _mm512_maskz_loadu_epi8(0xffffffffull, xp);
      UNROLL for (int c = 0; c < 2; ++c) {
        const __m512i xx = kSigned ? _mm512_mask_sub_epi8(x, neg[c], zero, x) : x;
        S[i][c] = _mm512_dpwssd_epi32(S[i][c], _mm512_maddubs_epi16(wa[c], xx), sc[c]);
      }
    }
  };
  const DecodedBlock* rows[2] = {a.dec + r0 * a.nblk, a.dec + r1 * a.nblk};
  if constexpr (nv == 256) {
    const __m512i idx[4] = {scale_index(0), scale_index(1), scale_index(2), scale_index(3)};
    for (int64_t kb = 0; kb < a.nblk; ++kb) {
      const DecodedBlock &b0 = rows[0][kb], &b1 = rows[1][kb];
      __m512i S[RI][2];
      UNROLL for (int i = 0; i < RI; ++i) S[i][0] = S[i][1] = zero;
      UNROLL for (int h = 0; h < 4; ++h) {
        const __m512i w[2] = {load64(b0.q + 64 * h), load64(b1.q + 64 * h)};
        const __m512i sc[2] = {_mm512_permutexvar_epi16(idx[h], _mm512_castsi256_si512(load32(b0.sc))),
                               _mm512_permutexvar_epi16(idx[h], _mm512_castsi256_si512(load32(b1.sc)))};
        chunk(w, sc, kb * 256 + 64 * h, true, S);
      }
      const __m512 D = pair_ps(b0.d, b1.d);
      UNROLL for (int i = 0; i < RI; ++i) {
        const __m512 dx = _mm512_set1_ps(a.xd[i * a.nblk + kb]);
        F[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(fold_pair(S[i][0], S[i][1])), _mm512_mul_ps(dx, D), F[i]);
        if constexpr (kMins) {
          const __m512i mi = _mm512_inserti64x4(_mm512_castsi256_si512(load32(b0.mi)), load32(b1.mi), 1);
          const __m512i xs = _mm512_broadcast_i64x4(load32(a.xs + i * (a.K / 16) + kb * 16));
          MF[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_madd_epi16(mi, xs)), _mm512_mul_ps(dx, pair_ps(b0.dmin, b1.dmin)),
                                  MF[i]);
        }
      }
    }
  } else {
    // 32-value blocks have sc = 1 (ggml_decode.h): blocks kb and kb + 1 share a register.
    const __m512i sc[2] = {_mm512_set1_epi16(1), _mm512_set1_epi16(1)};
    for (int64_t kb = 0; kb < a.nblk; kb += 2) {
      const bool pair = kb + 1 < a.nblk;
      __m512i S[RI][2], w[2];
      UNROLL for (int i = 0; i < RI; ++i) S[i][0] = S[i][1] = zero;
      UNROLL for (int c = 0; c < 2; ++c) {
        const __m512i lo = _mm512_zextsi256_si512(load32(rows[c][kb].q));
        w[c] = pair ? _mm512_inserti64x4(lo, load32(rows[c][kb + 1].q), 1) : lo;
      }
      chunk(w, sc, kb * 32, pair, S);
      // Block kb from the registers' low halves, then kb + 1 from their high halves.
      for (int u = 0; u < 1 + int(pair); ++u) {
        const DecodedBlock &b0 = rows[0][kb + u], &b1 = rows[1][kb + u];
        const __m512 D = pair_ps(b0.d, b1.d);
        UNROLL for (int i = 0; i < RI; ++i) {
          const float dxs = a.xd[i * a.nblk + kb + u];
          const __m512i s = u == 0 ? _mm512_shuffle_i64x2(S[i][0], S[i][1], 0x44)
                                   : _mm512_shuffle_i64x2(S[i][0], S[i][1], 0xee);
          F[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(_mm512_set1_ps(dxs), D), F[i]);
          if constexpr (kMins) {  // lane 0 of each row only; the other lanes' factor stays exactly 0
            const int16_t* xs = a.xs + i * (a.K / 16) + (kb + u) * 2;
            const int32_t m0 = int32_t(b0.mi[0]) * xs[0] + int32_t(b0.mi[1]) * xs[1];
            const int32_t m1 = int32_t(b1.mi[0]) * xs[0] + int32_t(b1.mi[1]) * xs[1];
            const __m512i M = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(0x0001, m0), 0x0100, m1);
            const __m512 sm = _mm512_maskz_mul_ps(0x0101, _mm512_set1_ps(dxs), pair_ps(b0.dmin, b1.dmin));
            MF[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(M), sm, MF[i]);
          }
        }
      }
    }
  }
  UNROLL for (int i = 0; i < RI; ++i) {
    const __m256 f0 = _mm512_castps512_ps256(F[i]), m0 = _mm512_castps512_ps256(MF[i]);
    a.y[i * a.ldy + r0] = kMins ? simd::hsum(f0) - simd::hsum(m0) : simd::hsum(f0);
    if (r1 != r0) {
      const __m256 f1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(F[i]), 1));
      const __m256 m1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(MF[i]), 1));
      a.y[i * a.ldy + r1] = kMins ? simd::hsum(f1) - simd::hsum(m1) : simd::hsum(f1);
    }
  }
}

// Tile shape: 4 × 2 measured fastest (against 6 × 2, 4 × 3, 3 × 3) at N = 1408, K = 2048, m = 512.
constexpr int kRI = 4;

template <DType t>
void run(const Job& job, int64_t n0, int64_t n1) {
  if (job.m == 1) {
    if constexpr (has_row512<t>) return run_rows<t>(job, n0, n1);
    else return run_cols_ggml_avx2(job, n0, n1);
  }
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
    // The next panel's bytes are fetched while this one runs, a few lines before each tile
    // (its decode waited on DRAM otherwise; a burst of prefetches stalls on miss buffers).
    size_t pf = size_t(p0 + pn) * rb;
    const size_t pf_end = size_t(std::min(n1, p0 + pn + panel)) * rb;
    const int64_t tiles = (m + kRI - 1) / kRI * ((pn + 1) / 2);  // about: leftover rows of x go one by one
    const size_t pf_step = (pf_end - pf) / size_t(tiles) / 64 * 64 + 64;          // whole lines, at least one
    for (int64_t i0 = 0; i0 < m;) {
      const int64_t ri = m - i0 >= kRI ? kRI : 1;
      const TileArgs a{dec.data(), nblk, job.qa.q + i0 * K, job.qa.d + i0 * nblk, job.qa.g16 + i0 * (K / 16), K,
                       job.y + i0 * N + p0, N};
      for (int64_t r = 0; r < pn; r += 2) {
        for (const size_t e = std::min(pf + pf_step, pf_end); pf < e; pf += 64)
          _mm_prefetch(reinterpret_cast<const char*>(data + pf), _MM_HINT_T0);
        const int64_t r1 = std::min(r + 1, pn - 1);
        ri == kRI ? tile<kMins, nv, kRI>(a, r, r1) : tile<kMins, nv, 1>(a, r, r1);
      }
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
