// AVX2 kernel for GGML block formats, bit-identical to ggml_matmul_scalar.cpp: the same
// decoded int8 blocks (SIMD decoders for the K-quants, IQ4_XS and the lattices; the scalar
// ones elsewhere), exact int32 sums of 4 products per lane (vpmaddubsw + vpmaddwd), then
// the same FMAs. One instantiation per format.
//   decode (one row of x): the commonest formats (Q4_K, Q5_K, Q6_K, Q5_0, IQ4_NL, IQ2_XXS)
//     dot straight from the block bytes; the others decode each block and use it at once;
//   prefill (more rows): a panel of weight rows is decoded once, then 4 × 2 register tiles
//     (rows of x × weight rows) run over it.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "backend/cpu/ggml_decode.h"
#include "backend/cpu/kernels.h"
#include "io/ggml_blocks.h"
#include "io/ggml_iq_grids.h"
#include "io/ggml_quants.h"
// simd.h last: only fathom's own functions get the AVX2 target.
#include "backend/cpu/simd.h"

FATHOM_AVX2_BEGIN
// Internal linkage: compiled here for AVX2 and F16C, and separately for the scalar decoders.
#include "backend/cpu/ggml_scales.h"

namespace fathom::cpu::detail {
namespace {

using namespace ggml::iq;

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline void store32(void* p, __m256i v) { _mm256_storeu_si256(static_cast<__m256i*>(p), v); }
inline __m256i nib_lo(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0f)); }
inline __m256i bits(__m256i v, int shift, int mask) {
  return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(char(mask)));
}

// Four 8-value points with their sign bytes: value j of point p is negated where bit j of
// signs[p] is set.
inline __m256i apply_signs(__m256i points, uint8_t s0, uint8_t s1, uint8_t s2, uint8_t s3) {
  const __m256i bitsel = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i s = _mm256_setr_epi64x(int64_t(s0 * 0x0101010101010101ull), int64_t(s1 * 0x0101010101010101ull),
                                       int64_t(s2 * 0x0101010101010101ull), int64_t(s3 * 0x0101010101010101ull));
  const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(s, bitsel), bitsel);
  return _mm256_sub_epi8(_mm256_xor_si256(points, neg), neg);
}

inline __m256i points4(uint64_t p0, uint64_t p1, uint64_t p2, uint64_t p3) {
  return _mm256_setr_epi64x(int64_t(p0), int64_t(p1), int64_t(p2), int64_t(p3));
}

// IQ1: 8·grid ± 1 for four points, delta sign per point (true: −1).
inline __m256i iq1_points(uint64_t p0, uint64_t p1, uint64_t p2, uint64_t p3, bool n0, bool n1, bool n2, bool n3) {
  const __m256i g = _mm256_sign_epi8(_mm256_set1_epi8(8), points4(p0, p1, p2, p3));
  const __m256i d = _mm256_setr_epi64x(n0 ? -1 : 0x0101010101010101, n1 ? -1 : 0x0101010101010101,
                                       n2 ? -1 : 0x0101010101010101, n3 ? -1 : 0x0101010101010101);
  return _mm256_add_epi8(g, d);
}

// Byte k (0..31) is 0xff where bit k of `bits` is set.
inline __m256i bytes_from_bits(uint32_t bits) {
  const __m256i which = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303);
  const __m256i sel = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(int(bits)), which);
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

// A 32-value block's 16 nibble bytes as values 0..15 (low nibbles) and 16..31 (high).
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i m = _mm_set1_epi8(0x0f);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), m), _mm_and_si128(v, m));
}

inline __m256i iq4_lut() {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ggml::kIQ4NLValues)));
}

// Q5_0 (q − 16) and Q5_1 (q): 4 low bits in nibbles, the fifth in a 32-bit mask.
template <bool kQ50>
inline __m256i q5x_quants(const uint8_t* b) {
  constexpr int off = kQ50 ? 2 : 4;
  const __m256i hi = _mm256_and_si256(bytes_from_bits(u32(b + off)), _mm256_set1_epi8(0x10));
  const __m256i v = _mm256_or_si256(nibbles32(b + off + 4), hi);
  return kQ50 ? _mm256_sub_epi8(v, _mm256_set1_epi8(16)) : v;
}

// Q4_K/Q5_K: the 64 values of 32-byte group p, as sub-blocks 2p (lo) and 2p + 1 (hi).
template <bool kQ5>
inline void q45k_quants(const uint8_t* b, int p, __m256i& lo, __m256i& hi) {
  const __m256i v = load32(b + (kQ5 ? 48 : 16) + 32 * p);
  lo = nib_lo(v), hi = bits(v, 4, 0x0f);
  if constexpr (kQ5) {
    const __m256i qh = load32(b + 16);
    lo = _mm256_or_si256(lo, _mm256_slli_epi16(bits(qh, 2 * p, 1), 4));
    hi = _mm256_or_si256(hi, _mm256_slli_epi16(bits(qh, 2 * p + 1, 1), 4));
  }
}

// Q6_K: the 128 values of half h as four groups of 32, unsigned 0..63 (the −32 is a min).
inline void q6k_quants(const uint8_t* b, int h, __m256i q[4]) {
  const __m256i l0 = load32(b + 64 * h), l1 = load32(b + 64 * h + 32), qh = load32(b + 128 + 32 * h);
  q[0] = _mm256_or_si256(nib_lo(l0), _mm256_slli_epi16(bits(qh, 0, 3), 4));
  q[1] = _mm256_or_si256(nib_lo(l1), _mm256_slli_epi16(bits(qh, 2, 3), 4));
  q[2] = _mm256_or_si256(bits(l0, 4, 0x0f), _mm256_slli_epi16(bits(qh, 4, 3), 4));
  q[3] = _mm256_or_si256(bits(l1, 4, 0x0f), _mm256_slli_epi16(bits(qh, 6, 3), 4));
}

// Decodes the quants of one block into q; false where only the scalar decoder exists.
[[gnu::always_inline]] inline bool decode_quants(DType t, const uint8_t* b, int8_t* q) {
  switch (t) {
    case DType::Q4_1: store32(q, nibbles32(b + 4)); return true;
    case DType::Q5_0: store32(q, q5x_quants<true>(b)); return true;
    case DType::Q5_1: store32(q, q5x_quants<false>(b)); return true;
    case DType::IQ4_NL: store32(q, _mm256_shuffle_epi8(iq4_lut(), nibbles32(b + 2))); return true;
    case DType::Q4_K: case DType::Q5_K:
      for (int g = 0; g < 4; ++g) {
        __m256i lo, hi;
        if (t == DType::Q5_K) q45k_quants<true>(b, g, lo, hi);
        else q45k_quants<false>(b, g, lo, hi);
        store32(q + 64 * g, lo);
        store32(q + 64 * g + 32, hi);
      }
      return true;
    case DType::Q6_K:
      for (int h = 0; h < 2; ++h) {
        __m256i v[4];
        q6k_quants(b, h, v);
        for (int k = 0; k < 4; ++k) store32(q + 128 * h + 32 * k, v[k]);
      }
      return true;
    case DType::Q2_K:
      for (int h = 0; h < 2; ++h) {
        const __m256i v = load32(b + 16 + 32 * h);
        for (int f = 0; f < 4; ++f) store32(q + 128 * h + 32 * f, bits(v, 2 * f, 3));
      }
      return true;
    case DType::Q3_K: {
      const __m256i hm = load32(b), four = _mm256_set1_epi8(4);
      for (int h = 0; h < 2; ++h) {
        const __m256i v = load32(b + 32 + 32 * h);
        for (int f = 0; f < 4; ++f) {
          const __m256i hb = _mm256_slli_epi16(bits(hm, 4 * h + f, 1), 2);  // 4 where the bit is set
          store32(q + 128 * h + 32 * f, _mm256_sub_epi8(_mm256_add_epi8(bits(v, 2 * f, 3), hb), four));
        }
      }
      return true;
    }
    case DType::IQ4_XS: {
      const __m256i lut = iq4_lut();
      for (int j = 0; j < 8; j += 2) {
        const __m256i v = load32(b + 8 + 16 * j);
        const __m256i lo = _mm256_shuffle_epi8(lut, nib_lo(v)), hi = _mm256_shuffle_epi8(lut, bits(v, 4, 0x0f));
        store32(q + 32 * j, _mm256_permute2x128_si256(lo, hi, 0x20));
        store32(q + 32 * j + 32, _mm256_permute2x128_si256(lo, hi, 0x31));
      }
      return true;
    }
    case DType::IQ2_XXS:
      for (int j = 0; j < 8; ++j) {
        const uint8_t* s = b + 2 + 8 * j;
        const uint32_t aux = u32(s + 4);
        const __m256i p = points4(kIq2xxsGrid[s[0]], kIq2xxsGrid[s[1]], kIq2xxsGrid[s[2]], kIq2xxsGrid[s[3]]);
        store32(q + 32 * j, apply_signs(p, signs_from7(aux), signs_from7(aux >> 7), signs_from7(aux >> 14),
                                        signs_from7(aux >> 21)));
      }
      return true;
    case DType::IQ2_XS:
      for (int j = 0; j < 8; ++j) {
        uint16_t v[4];
        std::memcpy(v, b + 2 + 8 * j, 8);
        const __m256i p = points4(kIq2xsGrid[v[0] & 511], kIq2xsGrid[v[1] & 511], kIq2xsGrid[v[2] & 511],
                                  kIq2xsGrid[v[3] & 511]);
        store32(q + 32 * j, apply_signs(p, signs_from7(v[0] >> 9), signs_from7(v[1] >> 9), signs_from7(v[2] >> 9),
                                        signs_from7(v[3] >> 9)));
      }
      return true;
    case DType::IQ2_S:
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = b + 2 + 4 * j;
        const int qh = b[66 + j];
        const uint8_t* sg = b + 34 + 4 * j;
        const __m256i p = points4(kIq2sGrid[size_t(qs[0] | ((qh << 8) & 0x300))],
                                  kIq2sGrid[size_t(qs[1] | ((qh << 6) & 0x300))],
                                  kIq2sGrid[size_t(qs[2] | ((qh << 4) & 0x300))],
                                  kIq2sGrid[size_t(qs[3] | ((qh << 2) & 0x300))]);
        store32(q + 32 * j, apply_signs(p, sg[0], sg[1], sg[2], sg[3]));
      }
      return true;
    case DType::IQ3_XXS:
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = b + 2 + 8 * j;
        const uint32_t aux = u32(b + 66 + 4 * j);
        auto pt = [&](int l) { return uint64_t(kIq3xxsGrid[qs[2 * l]]) | uint64_t(kIq3xxsGrid[qs[2 * l + 1]]) << 32; };
        store32(q + 32 * j, apply_signs(points4(pt(0), pt(1), pt(2), pt(3)), signs_from7(aux), signs_from7(aux >> 7),
                                        signs_from7(aux >> 14), signs_from7(aux >> 21)));
      }
      return true;
    case DType::IQ3_S:
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = b + 2 + 8 * j;
        const int qh = b[66 + j];
        const uint8_t* sg = b + 74 + 4 * j;
        auto pt = [&](int l) {
          return uint64_t(kIq3sGrid[size_t(qs[2 * l] | ((qh << (8 - 2 * l)) & 256))]) |
                 uint64_t(kIq3sGrid[size_t(qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256))]) << 32;
        };
        store32(q + 32 * j, apply_signs(points4(pt(0), pt(1), pt(2), pt(3)), sg[0], sg[1], sg[2], sg[3]));
      }
      return true;
    case DType::IQ1_S:
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = b + 2 + 4 * j;
        const uint16_t qh = u16(b + 34 + 2 * j);
        auto pt = [&](int l) { return kIq1sGrid[size_t(qs[l] | (((qh >> (3 * l)) & 7) << 8))]; };
        const bool neg = qh & 0x8000;
        store32(q + 32 * j, iq1_points(pt(0), pt(1), pt(2), pt(3), neg, neg, neg, neg));
      }
      return true;
    case DType::IQ1_M:
      for (int j = 0; j < 8; ++j) {
        const uint8_t* qs = b + 4 * j;
        const int n0 = b[32 + 2 * j] & 0xf, n1 = b[32 + 2 * j] >> 4, n2 = b[33 + 2 * j] & 0xf, n3 = b[33 + 2 * j] >> 4;
        store32(q + 32 * j, iq1_points(kIq1sGrid[size_t(qs[0] | ((n0 & 7) << 8))], kIq1sGrid[size_t(qs[1] | ((n1 & 7) << 8))],
                                       kIq1sGrid[size_t(qs[2] | ((n2 & 7) << 8))], kIq1sGrid[size_t(qs[3] | ((n3 & 7) << 8))],
                                       n0 & 8, n1 & 8, n2 & 8, n3 & 8));
      }
      return true;
    default: return false;
  }
}

// The per-16 scales and mins of the K-quants with 16-byte vector ops, the same integers as
// decode_scales_with, which spends a scalar store on each (the panels' decode is otherwise
// dominated by them); false for the other formats.
inline float f16(const uint8_t* p) { return _cvtsh_ss(u16(p)); }

// Eight bytes, each as two equal int16 (a scale per 32 values, stored per 16).
inline __m256i twice(uint64_t bytes) {
  const __m128i v = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(bytes)));
  return _mm256_set_m128i(_mm_unpackhi_epi16(v, v), _mm_unpacklo_epi16(v, v));
}

[[gnu::always_inline]] inline bool decode_scales_vec(DType t, const uint8_t* b, DecodedBlock& o) {
  switch (t) {
    case DType::Q4_K: case DType::Q5_K: {
      o.d = f16(b), o.dmin = f16(b + 2);
      const K4Scales k = k4_scales(b + 4);
      store32(o.sc, twice(k.scales8()));
      store32(o.mi, twice(k.mins8()));
      return true;
    }
    case DType::Q6_K: {
      o.d = o.dmin = f16(b + 208);
      const __m256i sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
      store32(o.sc, sc);
      store32(o.mi, _mm256_slli_epi16(sc, 5));  // 32·sc
      return true;
    }
    case DType::Q2_K: {
      o.d = f16(b + 80), o.dmin = f16(b + 82);
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b)), m = _mm_set1_epi8(0x0f);
      store32(o.sc, _mm256_cvtepu8_epi16(_mm_and_si128(v, m)));
      store32(o.mi, _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m)));
      return true;
    }
    case DType::Q3_K: {  // q3k_scale for all 16: low 4 bits from 8 bytes, top 2 from 4 more
      o.d = f16(b + 108);
      const __m128i a = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 96)), m = _mm_set1_epi8(0x0f);
      const __m128i lo = _mm_unpacklo_epi64(_mm_and_si128(a, m), _mm_and_si128(_mm_srli_epi16(a, 4), m));
      // Byte j: bits 2·(j/4), +1 of byte 8 + j%4.
      const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_set1_epi32(int(u32(b + 104))), _mm_setr_epi32(0, 2, 4, 6)),
                                       _mm_set1_epi8(3));
      const __m128i v = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
      store32(o.sc, _mm256_cvtepi8_epi16(v));
      return true;
    }
    case DType::IQ4_XS: {
      o.d = f16(b);
      const uint16_t h = u16(b + 2);
      uint64_t v = 0;
      for (int j = 0; j < 8; ++j)
        v |= uint64_t(((b[4 + j / 2] >> (4 * (j % 2))) & 0xf) | (((h >> (2 * j)) & 3) << 4)) << (8 * j);
      store32(o.sc, _mm256_sub_epi16(twice(v), _mm256_set1_epi16(32)));
      return true;
    }
    default: return false;
  }
}

[[gnu::always_inline]] inline void decode_block(DType t, const uint8_t* b, DecodedBlock& blk) {
  if (!decode_quants(t, b, blk.q)) return decode_block_scalar(t, b, blk);
  if (!decode_scales_vec(t, b, blk)) decode_scales_with(t, b, blk, f16);
}

// Formats whose scales come per 32 values (both halves of a group share one).
constexpr bool scale_per_32(DType t) {
  return !(t == DType::Q2_K || t == DType::Q3_K || t == DType::Q6_K || t == DType::IQ2_XS || t == DType::IQ2_S ||
           t == DType::IQ1_M);
}

// The factor of the mins lanes: a 32-value block has its mins in lane 0 only, and the other
// lanes must stay untouched (as in the scalar kernel) even when the factor is inf.
inline __m256 min_scale(int nv, float s) {
  return nv == 256 ? _mm256_set1_ps(s) : _mm256_setr_ps(s, 0, 0, 0, 0, 0, 0, 0);
}

// One decoded block against one row's activations at the same offset (ggml_decode.h).
template <bool kUnsigned, bool kMins, bool kPer32>
inline void block_dot(const DecodedBlock& b, int nv, const int8_t* xq, float dx, const int16_t* xs16, __m256& f,
                      __m256& mf) {
  __m256i S = _mm256_setzero_si256();
  for (int g = 0; g < nv / 32; ++g) {
    const __m256i w = load32(b.q + 32 * g), x = load32(xq + 32 * g);
    const __m256i p16 = kUnsigned ? _mm256_maddubs_epi16(w, x)
                                  : _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    const __m256i sc = kPer32 ? _mm256_set1_epi16(b.sc[2 * g])
                              : _mm256_set_m128i(_mm_set1_epi16(b.sc[2 * g + 1]), _mm_set1_epi16(b.sc[2 * g]));
    S = _mm256_add_epi32(S, _mm256_madd_epi16(p16, sc));
  }
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), _mm256_set1_ps(dx * b.d), f);
  if constexpr (kMins) {
    const __m256i M = nv == 256 ? _mm256_madd_epi16(load32(b.mi), load32(xs16))
                                : _mm256_setr_epi32(int32_t(b.mi[0]) * xs16[0] + int32_t(b.mi[1]) * xs16[1], 0, 0, 0, 0,
                                                    0, 0, 0);
    mf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), min_scale(nv, dx * b.dmin), mf);
  }
}

// Prefill: 4 rows of x × 2 weight rows per pass over a block, each pair's integers and
// FMAs exactly those of block_dot (the weights and activations are loaded once per tile).
template <bool kUnsigned, bool kMins, bool kPer32, int nv>
[[gnu::always_inline]] inline void block_dot_4x2(const DecodedBlock* b0, const DecodedBlock* b1, const int8_t* const xq[4],
                          const float dx[4], const int16_t* const xs[4], __m256 f[4][2], __m256 mf[4][2]) {
  __m256i S[4][2];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) S[i][0] = S[i][1] = _mm256_setzero_si256();
  const DecodedBlock* bc[2] = {b0, b1};
  for (int g = 0; g < nv / 32; ++g) {
    __m256i w[2], wa[2], sc[2];
#pragma GCC unroll 2
    for (int c = 0; c < 2; ++c) {
      w[c] = load32(bc[c]->q + 32 * g);
      wa[c] = kUnsigned ? w[c] : _mm256_sign_epi8(w[c], w[c]);
      sc[c] = kPer32 ? _mm256_set1_epi16(bc[c]->sc[2 * g])
                     : _mm256_set_m128i(_mm_set1_epi16(bc[c]->sc[2 * g + 1]), _mm_set1_epi16(bc[c]->sc[2 * g]));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      const __m256i x = load32(xq[i] + 32 * g);
#pragma GCC unroll 2
      for (int c = 0; c < 2; ++c) {
        const __m256i p16 = _mm256_maddubs_epi16(wa[c], kUnsigned ? x : _mm256_sign_epi8(x, w[c]));
        S[i][c] = _mm256_add_epi32(S[i][c], _mm256_madd_epi16(p16, sc[c]));
      }
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i)
#pragma GCC unroll 2
    for (int c = 0; c < 2; ++c) {
      f[i][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S[i][c]), _mm256_set1_ps(dx[i] * bc[c]->d), f[i][c]);
      if constexpr (kMins) {
        const __m256i M = nv == 256 ? _mm256_madd_epi16(load32(bc[c]->mi), load32(xs[i]))
                                    : _mm256_setr_epi32(int32_t(bc[c]->mi[0]) * xs[i][0] + int32_t(bc[c]->mi[1]) * xs[i][1],
                                                        0, 0, 0, 0, 0, 0, 0);
        mf[i][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), min_scale(nv, dx[i] * bc[c]->dmin), mf[i][c]);
      }
    }
}

template <bool kMins>
inline float finish(__m256 f, __m256 mf) {
  return kMins ? simd::hsum(f) - simd::hsum(mf) : simd::hsum(f);
}

// Decode (one row of x): the hottest formats dot straight from the block bytes, without the
// DecodedBlock round trip. Same integers and the same FMAs as block_dot.
// Q4_K / Q5_K: 8 sub-blocks of 32, 6-bit scales and mins (decode_scales_with, four bytes at a time).
template <bool kQ5>
inline void superblock_q45k(const uint8_t* b, const int8_t* xq, float dx, const int16_t* xs, __m256& f, __m256& mf) {
  const K4Scales k = k4_scales(b + 4);
  // Scale g as int16 in every position of both lanes: one vpshufb per group.
  const __m256i sc16 = _mm256_broadcastsi128_si256(
      _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(k.scales8()))));
  const __m128i m8 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(k.mins8())));
  const __m256i m32 = _mm256_cvtepu16_epi32(m8);
  const __m256i mdup = _mm256_or_si256(m32, _mm256_slli_epi32(m32, 16));  // mi[2j] = mi[2j+1] = m[j]
  __m256i S = _mm256_setzero_si256();
  for (int p = 0; p < 4; ++p) {
    __m256i lo, hi;
    q45k_quants<kQ5>(b, p, lo, hi);
    const __m256i c0 = _mm256_set1_epi16(int16_t(0x0100 + 0x0202 * (2 * p)));  // bytes 4p, 4p+1
    const __m256i c1 = _mm256_set1_epi16(int16_t(0x0100 + 0x0202 * (2 * p + 1)));
    const __m256i p0 = _mm256_maddubs_epi16(lo, load32(xq + 64 * p));
    const __m256i p1 = _mm256_maddubs_epi16(hi, load32(xq + 64 * p + 32));
    S = _mm256_add_epi32(S, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc16, c0)));
    S = _mm256_add_epi32(S, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc16, c1)));
  }
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), _mm256_set1_ps(dx * f16(b)), f);
  const __m256i M = _mm256_madd_epi16(mdup, load32(xs));
  mf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), _mm256_set1_ps(dx * f16(b + 2)), mf);
}

// Q6_K: 16 sub-blocks of 16 with int8 scales; unsigned 6-bit quants, the −32 as a min.
inline void superblock_q6k(const uint8_t* b, const int8_t* xq, float dx, const int16_t* xs, __m256& f, __m256& mf) {
  const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192)));
  // Group g: unit g of sc16 holds (sc[2g], sc[2g+1]); spread sc[2g] over the low lane, sc[2g+1] the high.
  const __m256i spread = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2,
                                          3, 2, 3, 2, 3);
  __m256i S = _mm256_setzero_si256();
  for (int h = 0; h < 2; ++h) {
    __m256i q[4];
    q6k_quants(b, h, q);
    for (int k = 0; k < 4; ++k) {
      const int g = 4 * h + k;
      const __m256i p16 = _mm256_maddubs_epi16(q[k], load32(xq + 32 * g));
      const __m256i sc = _mm256_shuffle_epi8(_mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(g)), spread);
      S = _mm256_add_epi32(S, _mm256_madd_epi16(p16, sc));
    }
  }
  const __m256 dd = _mm256_set1_ps(dx * f16(b + 208));
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), dd, f);
  const __m256i M = _mm256_madd_epi16(_mm256_slli_epi16(sc16, 5), load32(xs));  // mi = 32·sc
  mf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(M), dd, mf);
}

// A 32-value block with sc = 1 and signed quants q, its f16 d at b (Q5_0 and IQ4_NL: the
// K-quant and IQ files' fallbacks for rows of 1408).
inline void block32_signed(__m256i q, const uint8_t* b, const int8_t* xq, float dx, __m256& f) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(load32(xq), q));
  const __m256i S = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), _mm256_set1_ps(dx * f16(b)), f);
}

// Byte j of entry i is 0xff where value j is negative under 7-bit sign field i.
constexpr std::array<uint64_t, 128> kSignMasks = [] {
  std::array<uint64_t, 128> m{};
  for (uint32_t i = 0; i < 128; ++i)
    for (int j = 0; j < 8; ++j)
      if ((signs_from7(i) >> j) & 1) m[i] |= uint64_t(0xff) << (8 * j);
  return m;
}();

// IQ2_XXS: the grid magnitudes go unsigned into vpmaddubsw and the signs onto x (the same
// products as |q| · sign(x, q)).
inline void superblock_iq2xxs(const uint8_t* b, const int8_t* xq, float dx, __m256& f) {
  const __m256i one = _mm256_set1_epi8(1);
  __m256i S = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    const uint8_t* sub = b + 2 + 8 * j;
    const uint32_t aux = u32(sub + 4);
    const __m256i g = points4(kIq2xxsGrid[sub[0]], kIq2xxsGrid[sub[1]], kIq2xxsGrid[sub[2]], kIq2xxsGrid[sub[3]]);
    const __m256i neg = _mm256_setr_epi64x(int64_t(kSignMasks[aux & 127]), int64_t(kSignMasks[(aux >> 7) & 127]),
                                           int64_t(kSignMasks[(aux >> 14) & 127]), int64_t(kSignMasks[(aux >> 21) & 127]));
    const __m256i x = _mm256_sign_epi8(load32(xq + 32 * j), _mm256_or_si256(neg, one));
    const __m256i p16 = _mm256_maddubs_epi16(g, x);
    S = _mm256_add_epi32(S, _mm256_madd_epi16(p16, _mm256_set1_epi16(int16_t(2 * (aux >> 28) + 1))));
  }
  f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(S), _mm256_set1_ps(dx * (f16(b) * 0.125f)), f);
}

template <DType t>
constexpr bool has_fused_row = t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K || t == DType::Q5_0 ||
                               t == DType::IQ4_NL || t == DType::IQ2_XXS;

template <DType t>
inline float fused_row(const uint8_t* row, int64_t nblk, const int8_t* xq, const float* xd, const int16_t* xs) {
  __m256 f = _mm256_setzero_ps(), mf = _mm256_setzero_ps();
  constexpr int nv = ggml_block(t)->values;
  constexpr size_t bb = ggml_block(t)->bytes;
  for (int64_t kb = 0; kb < nblk; ++kb) {
    const uint8_t* b = row + size_t(kb) * bb;
    if constexpr (t == DType::Q4_K || t == DType::Q5_K)
      superblock_q45k<t == DType::Q5_K>(b, xq + kb * nv, xd[kb], xs + kb * nv / 16, f, mf);
    else if constexpr (t == DType::Q6_K)
      superblock_q6k(b, xq + kb * nv, xd[kb], xs + kb * nv / 16, f, mf);
    else if constexpr (t == DType::Q5_0)
      block32_signed(q5x_quants<true>(b), b, xq + kb * nv, xd[kb], f);
    else if constexpr (t == DType::IQ4_NL)
      block32_signed(_mm256_shuffle_epi8(iq4_lut(), nibbles32(b + 2)), b, xq + kb * nv, xd[kb], f);
    else
      superblock_iq2xxs(b, xq + kb * nv, xd[kb], f);
  }
  return ggml_mins(t) ? simd::hsum(f) - simd::hsum(mf) : simd::hsum(f);
}

// One kernel per format, so that its decoder inlines without a switch per block.
template <DType t>
void run(const Job& job, int64_t n0, int64_t n1) {
  // Quants ≥ 0 (the formats with mins, ggml_decode.h) go straight into vpmaddubsw.
  constexpr bool kMins = ggml_mins(t), kUnsigned = kMins;
  const WeightView& w = *job.w;
  const int64_t K = w.cols, N = w.rows, m = job.m;
  constexpr int nv = ggml_block(t)->values;
  constexpr size_t bb = ggml_block(t)->bytes;
  const int64_t nblk = K / nv;
  const size_t rb = bb * size_t(nblk);
  const auto* data = static_cast<const uint8_t*>(w.data);
  if (m == 1 && has_fused_row<t>) {
    for (int64_t n = n0; n < n1; ++n)
      job.y[n] = fused_row<t>(data + size_t(n) * rb, nblk, job.qa.q, job.qa.d, job.qa.g16);
    return;
  }
  if (m == 1) {
    DecodedBlock blk;
    for (int64_t n = n0; n < n1; ++n) {
      const uint8_t* row = data + size_t(n) * rb;
      __m256 f = _mm256_setzero_ps(), mf = _mm256_setzero_ps();
      for (int64_t kb = 0; kb < nblk; ++kb) {
        decode_block(t, row + size_t(kb) * bb, blk);
        block_dot<kUnsigned, kMins, scale_per_32(t)>(blk, nv, job.qa.q + kb * nv, job.qa.d[kb], job.qa.g16 + kb * nv / 16, f, mf);
      }
      job.y[n] = finish<kMins>(f, mf);
    }
    return;
  }
  // A panel of weight rows decoded once (~256 KiB, in L2), then every row of x over it.
  const int64_t panel = std::clamp<int64_t>((256 << 10) / (nblk * int64_t(sizeof(DecodedBlock))), 1, 64);
  thread_local std::vector<DecodedBlock> dec;  // [panel, nblk]
  if (dec.size() < size_t(panel * nblk)) dec.resize(size_t(panel * nblk));
  for (int64_t p0 = n0; p0 < n1; p0 += panel) {
    const int64_t pn = std::min(panel, n1 - p0);
    for (int64_t r = 0; r < pn; ++r)
      for (int64_t kb = 0; kb < nblk; ++kb) decode_block(t, data + size_t(p0 + r) * rb + size_t(kb) * bb, dec[size_t(r * nblk + kb)]);
    const int64_t m4 = m / 4 * 4, pn2 = pn / 2 * 2;
    for (int64_t i0 = 0; i0 < m4; i0 += 4) {
      const int8_t* xq[4];
      const int16_t* xs[4];
      for (int i = 0; i < 4; ++i) xq[i] = job.qa.q + (i0 + i) * K, xs[i] = job.qa.g16 + (i0 + i) * (K / 16);
      for (int64_t r = 0; r < pn2; r += 2) {
        __m256 f[4][2], mf[4][2];
        for (int i = 0; i < 4; ++i) f[i][0] = f[i][1] = mf[i][0] = mf[i][1] = _mm256_setzero_ps();
        for (int64_t kb = 0; kb < nblk; ++kb) {
          const int8_t* xqb[4];
          const int16_t* xsb[4];
          float dx[4];
          for (int i = 0; i < 4; ++i)
            xqb[i] = xq[i] + kb * nv, xsb[i] = xs[i] + kb * nv / 16, dx[i] = job.qa.d[(i0 + i) * nblk + kb];
          block_dot_4x2<kUnsigned, kMins, scale_per_32(t), ggml_block(t)->values>(
              &dec[size_t(r * nblk + kb)], &dec[size_t((r + 1) * nblk + kb)], xqb, dx, xsb, f, mf);
        }
        for (int i = 0; i < 4; ++i)
          for (int c = 0; c < 2; ++c) job.y[(i0 + i) * N + p0 + r + c] = finish<kMins>(f[i][c], mf[i][c]);
      }
    }
    // The rows and columns the 4 × 2 tiles leave, one pair at a time.
    for (int64_t i = 0; i < m; ++i) {
      const int8_t* xq = job.qa.q + i * K;
      const float* xd = job.qa.d + i * nblk;
      const int16_t* xs = job.qa.g16 + i * (K / 16);
      for (int64_t r = i < m4 ? pn2 : 0; r < pn; ++r) {
        __m256 f = _mm256_setzero_ps(), mf = _mm256_setzero_ps();
        for (int64_t kb = 0; kb < nblk; ++kb)
          block_dot<kUnsigned, kMins, scale_per_32(t)>(dec[size_t(r * nblk + kb)], nv, xq + kb * nv, xd[kb], xs + kb * nv / 16, f, mf);
        job.y[i * N + p0 + r] = finish<kMins>(f, mf);
      }
    }
  }
}

}  // namespace

void run_cols_ggml_avx2(const Job& job, int64_t n0, int64_t n1) {
  dispatch_ggml(
      job.w->dtype, [&](auto t) { run<t.value>(job, n0, n1); }, [&] { fail_no_kernel("ggml avx2", job.w->dtype); });
}

void quantize_acts_ggml_avx2(const float* x, int64_t K, int nv, int8_t* q, float* d, int16_t* s16) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < K / nv; ++b) {
    const float* xb = x + b * nv;
    // max(a, amax) is a > amax ? a : amax per lane, as in quantize_act_block: a NaN is passed over.
    __m256 amax = _mm256_setzero_ps();
    for (int j = 0; j < nv; j += 8) amax = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + j)), amax);
    const float db = simd::hmax(amax) / 127.0f;
    const __m256 id = _mm256_set1_ps(db != 0.0f ? 1.0f / db : 0.0f);
    d[b] = db;
    for (int j = 0; j < nv; j += 32) {
      __m256i i32[4];
      simd::quantize32(xb + j, id, q + b * nv + j, i32);
      // |q| ≤ 127 after rounding, so the packs never saturated: the sums of the int32s.
      s16[(b * nv + j) / 16] = int16_t(simd::hsum_epi32(_mm256_add_epi32(i32[0], i32[1])));
      s16[(b * nv + j) / 16 + 1] = int16_t(simd::hsum_epi32(_mm256_add_epi32(i32[2], i32[3])));
    }
  }
}

void decode_blocks_avx2(DType t, const uint8_t* row, int64_t nblk, DecodedBlock* out) {
  dispatch_ggml(
      t,
      [&](auto tag) {
        constexpr size_t bb = ggml_block(tag.value)->bytes;
        for (int64_t kb = 0; kb < nblk; ++kb) decode_block(tag.value, row + size_t(kb) * bb, out[kb]);
      },
      [&] { fail_no_kernel("ggml avx2 decode", t); });
}

}  // namespace fathom::cpu::detail
FATHOM_AVX2_END
