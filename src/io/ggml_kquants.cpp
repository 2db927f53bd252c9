// The 256-value super-block types: Q2_K..Q6_K, Q8_K and IQ4_XS.
// Float operations follow ggml's reference converters exactly: the per-sub-block scale
// (d * sc) is rounded to float first, then multiplied by the integer quant, then the min is
// subtracted; Q6_K multiplies d * sc * q left to right.
#include <cstring>

#include "io/ggml_blocks.h"
#include "io/ggml_quants.h"

namespace fathom::ggml::blocks {
namespace {

constexpr int kQKK = 256;

// Q4_K / Q5_K pack eight 6-bit scales and eight 6-bit mins into 12 bytes: sub-blocks 0..3 use
// the low 6 bits of bytes 0..3 (scales) and 4..7 (mins); sub-blocks 4..7 take their low 4 bits
// from the nibbles of bytes 8..11 and their top 2 bits from the spare top bits of bytes 0..7.
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

}  // namespace

// [scales 16][qs 64][d f16][dmin f16]. Sub-block s (16 values) has scale nibble lo and min
// nibble hi of scales[s]; x = (d * sc) * q - (dmin * m). Each 128-value half reads 32 bytes of
// qs four times, 2 bits per pass.
void q2_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 84) {
    const uint8_t* scales = src;
    const uint8_t* q = src + 16;
    const float d = load_f16(src + 80);
    const float dmin = load_f16(src + 82);
    int is = 0;
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int part = 0; part < 2; ++part) {
          const uint8_t sc = scales[is++];
          const float dl = d * float(sc & 0xf);
          const float ml = dmin * float(sc >> 4);
          for (int l = 0; l < 16; ++l) *dst++ = dl * float((q[16 * part + l] >> shift) & 3) - ml;
        }
      }
    }
  }
}

// [hmask 32][qs 64][scales 12][d f16]. Sixteen 6-bit signed scales (stored + 32): scale j has
// its low 4 bits in a nibble of scales[j % 8] (low nibble for j < 8) and its top 2 bits in
// scales[8 + j % 4] at bit 2 * (j / 4). A value is its 2 low bits minus 4 when its hmask bit is
// clear; x = (d * (sc - 32)) * q.
void q3_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 110) {
    const uint8_t* hm = src;
    const uint8_t* q = src + 32;
    const uint8_t* packed = src + 96;
    const float d_all = load_f16(src + 108);
    int sc[16];
    for (int j = 0; j < 16; ++j) {
      const int lo = j < 8 ? (packed[j] & 0xf) : (packed[j - 8] >> 4);
      const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
      sc[j] = (lo | (hi << 4)) - 32;
    }
    int is = 0;
    int bit = 0;  // hmask bit, one per 32-value pass over the 256 values
    for (int half = 0; half < 2; ++half, q += 32) {
      for (int shift = 0; shift < 8; shift += 2, ++bit) {
        for (int part = 0; part < 2; ++part) {
          const float dl = d_all * float(sc[is++]);
          for (int l = 0; l < 16; ++l) {
            const int i = 16 * part + l;
            const int v = ((q[i] >> shift) & 3) - (((hm[i] >> bit) & 1) ? 0 : 4);
            *dst++ = dl * float(v);
          }
        }
      }
    }
  }
}

// [d f16][dmin f16][scales 12][qs 128]. Eight 32-value sub-blocks; qs byte l of a 64-value
// group holds value l (low nibble) and value 32 + l (high nibble). x = (d * sc) * q - dmin * m.
void q4_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 144) {
    const float d = load_f16(src);
    const float dmin = load_f16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* q = src + 16;
    for (int g = 0; g < 4; ++g, q += 32) {
      int sc, m;
      scale_min_k4(2 * g, scales, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(2 * g + 1, scales, sc, m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      for (int l = 0; l < 32; ++l) *dst++ = d1 * float(q[l] & 0xf) - m1;
      for (int l = 0; l < 32; ++l) *dst++ = d2 * float(q[l] >> 4) - m2;
    }
  }
}

// [d f16][dmin f16][scales 12][qh 32][qs 128]. As Q4_K plus a fifth bit: for 32-value
// sub-block s, bit s of qh[l] belongs to its value l.
void q5_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 176) {
    const float d = load_f16(src);
    const float dmin = load_f16(src + 2);
    const uint8_t* scales = src + 4;
    const uint8_t* qh = src + 16;
    const uint8_t* q = src + 48;
    for (int g = 0; g < 4; ++g, q += 32) {
      int sc, m;
      scale_min_k4(2 * g, scales, sc, m);
      const float d1 = d * float(sc), m1 = dmin * float(m);
      scale_min_k4(2 * g + 1, scales, sc, m);
      const float d2 = d * float(sc), m2 = dmin * float(m);
      const int b1 = 2 * g, b2 = 2 * g + 1;
      for (int l = 0; l < 32; ++l)
        *dst++ = d1 * float((q[l] & 0xf) + (((qh[l] >> b1) & 1) << 4)) - m1;
      for (int l = 0; l < 32; ++l)
        *dst++ = d2 * float((q[l] >> 4) + (((qh[l] >> b2) & 1) << 4)) - m2;
    }
  }
}

// [ql 128][qh 64][scales int8 16][d f16]. Per 128-value half: value 32k + l (k = 0..3) takes
// a nibble of ql[l + 32 * (k & 1)] (high nibble for k >= 2) and bits 2k..2k+1 of qh[l] as its
// top two bits; q is that 6-bit number minus 32, and its scale is scales[8 * half + 2k + l / 16].
// x = d * sc * q, left to right.
void q6_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 210) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const auto* sc = reinterpret_cast<const int8_t*>(src + 192);
    const float d = load_f16(src + 208);
    for (int half = 0; half < 2; ++half, ql += 64, qh += 32, sc += 8, dst += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        dst[l] = d * float(sc[is]) * float(q1);
        dst[l + 32] = d * float(sc[is + 2]) * float(q2);
        dst[l + 64] = d * float(sc[is + 4]) * float(q3);
        dst[l + 96] = d * float(sc[is + 6]) * float(q4);
      }
    }
  }
}

// [d f32][qs int8 256][bsums int16 16]: x = q * d (the block sums are for dot products only).
void q8_k(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 292, dst += kQKK) {
    float d;
    std::memcpy(&d, src, 4);
    const auto* qs = reinterpret_cast<const int8_t*>(src + 4);
    for (int j = 0; j < kQKK; ++j) dst[j] = float(qs[j]) * d;
  }
}

// [d f16][scales_h u16][scales_l 4][qs 128]. Eight 32-value sub-blocks, each with a 6-bit
// scale (stored + 32): low 4 bits in nibble s % 2 of scales_l[s / 2], top 2 bits at bit 2s of
// scales_h. Values as IQ4_NL: x = (d * (ls - 32)) * level[q].
void iq4_xs(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 136) {
    const float d = load_f16(src);
    const uint16_t scales_h = load_u16(src + 2);
    const uint8_t* scales_l = src + 4;
    const uint8_t* qs = src + 8;
    for (int s = 0; s < 8; ++s, qs += 16, dst += 32) {
      const int ls = ((scales_l[s / 2] >> (4 * (s % 2))) & 0xf) | (((scales_h >> (2 * s)) & 3) << 4);
      const float dl = d * float(ls - 32);
      for (int j = 0; j < 16; ++j) {
        dst[j] = dl * float(kIQ4NLValues[qs[j] & 0xf]);
        dst[j + 16] = dl * float(kIQ4NLValues[qs[j] >> 4]);
      }
    }
  }
}

}  // namespace fathom::ggml::blocks
