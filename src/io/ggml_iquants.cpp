// The lattice super-block types: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M.
// Each group of 8 (IQ3: 4) values is one point of the format's codebook (io/ggml_iq_grids),
// with signs and a per-sub-block scale. Float operations follow ggml's reference converters
// in order: the sub-block scale is rounded to float first, then times the grid value, then the
// sign (IQ1: times grid value + delta), so the results are bit-identical.
#include "io/ggml_blocks.h"
#include "io/ggml_iq_grids.h"

namespace fathom::ggml::blocks {
namespace {

using namespace iq;

// Byte j of a grid point.
inline int grid_byte(uint64_t point, int j) { return int((point >> (8 * j)) & 0xff); }

// out[j] = db * grid value j, negated where bit j of `signs` is set (j < 8).
inline void signed_point8(uint64_t point, uint8_t signs, float db, float* out) {
  for (int j = 0; j < 8; ++j) out[j] = db * float(grid_byte(point, j)) * ((signs >> j) & 1 ? -1.f : 1.f);
}

// Two 4-value IQ3 points as one group of 8 under one sign byte.
inline void signed_points4(uint32_t lo, uint32_t hi, uint8_t signs, float db, float* out) {
  signed_point8(uint64_t(lo) | (uint64_t(hi) << 32), signs, db, out);
}

// The IQ2/IQ3_XXS sub-block scale for its 4-bit field s: d · (0.5 + s) · c, in ggml's order.
inline float half_step_scale(float d, uint32_t s, float c) { return d * (0.5f + float(s)) * c; }

// IQ1 groups: out[j] = dl * (int8 value j + delta).
inline void shifted_point8(uint64_t point, float delta, float dl, float* out) {
  for (int j = 0; j < 8; ++j) out[j] = dl * (float(int8_t(grid_byte(point, j))) + delta);
}

}  // namespace

// [d f16][8 sub-blocks of 8 bytes]: bytes 0..3 index 4 grid points; the u32 at bytes 4..7
// holds four 7-bit sign fields and, in its top nibble, the scale s: db = d * (0.5 + s) / 4.
void iq2_xxs(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 66) {
    const float d = load_f16(src);
    for (int ib = 0; ib < 8; ++ib) {
      const uint8_t* sub = src + 2 + 8 * ib;
      const uint32_t aux = load_u32(sub + 4);
      const float db = half_step_scale(d, aux >> 28, 0.25f);
      for (int l = 0; l < 4; ++l, dst += 8)
        signed_point8(kIq2xxsGrid[sub[l]], signs_from7(aux >> (7 * l)), db, dst);
    }
  }
}

// [d f16][qs u16 × 32][scales 8]: each u16 is a 9-bit grid index and 7 sign bits; each scale
// byte holds the scales of a sub-block's two 16-value halves (low nibble first).
void iq2_xs(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 74) {
    const float d = load_f16(src);
    const uint8_t* scales = src + 66;
    for (int ib = 0; ib < 8; ++ib) {
      const float db[2] = {half_step_scale(d, scales[ib] & 0xf, 0.25f), half_step_scale(d, scales[ib] >> 4, 0.25f)};
      for (int l = 0; l < 4; ++l, dst += 8) {
        const uint16_t q = load_u16(src + 2 + 2 * (4 * ib + l));
        signed_point8(kIq2xsGrid[q & 511], signs_from7(q >> 9), db[l / 2], dst);
      }
    }
  }
}

// [d f16][qs 32][signs 32][qh 8][scales 8]: a 10-bit grid index is qs[k] plus 2 bits of qh
// per group; every group has a full sign byte.
void iq2_s(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 82) {
    const float d = load_f16(src);
    const uint8_t* qs = src + 2;
    const uint8_t* signs = src + 34;
    const uint8_t* qh = src + 66;
    const uint8_t* scales = src + 74;
    for (int ib = 0; ib < 8; ++ib) {
      const float db[2] = {half_step_scale(d, scales[ib] & 0xf, 0.25f), half_step_scale(d, scales[ib] >> 4, 0.25f)};
      for (int l = 0; l < 4; ++l, dst += 8) {
        const int idx = qs[4 * ib + l] | ((qh[ib] << (8 - 2 * l)) & 0x300);
        signed_point8(kIq2sGrid[size_t(idx)], signs[4 * ib + l], db[l / 2], dst);
      }
    }
  }
}

// [d f16][qs 64][scales-and-signs u32 × 8]: qs are 4-value grid indices, two per group of 8;
// the u32 is laid out as in IQ2_XXS, with db = d * (0.5 + s) / 2.
void iq3_xxs(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 98) {
    const float d = load_f16(src);
    const uint8_t* qs = src + 2;
    for (int ib = 0; ib < 8; ++ib) {
      const uint32_t aux = load_u32(src + 66 + 4 * ib);
      const float db = half_step_scale(d, aux >> 28, 0.5f);
      for (int l = 0; l < 4; ++l, dst += 8)
        signed_points4(kIq3xxsGrid[qs[8 * ib + 2 * l]], kIq3xxsGrid[qs[8 * ib + 2 * l + 1]],
                       signs_from7(aux >> (7 * l)), db, dst);
    }
  }
}

// [d f16][qs 64][qh 8][signs 32][scales 4]: a 9-bit grid index is qs[k] plus bit k%8 of the
// sub-block's qh byte; the scale nibble s of each sub-block gives db = d * (1 + 2s).
void iq3_s(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 110) {
    const float d = load_f16(src);
    const uint8_t* qs = src + 2;
    const uint8_t* qh = src + 66;
    const uint8_t* signs = src + 74;
    const uint8_t* scales = src + 106;
    for (int ib = 0; ib < 8; ++ib) {
      const int s = ib % 2 ? scales[ib / 2] >> 4 : scales[ib / 2] & 0xf;
      const float db = d * float(1 + 2 * s);
      for (int l = 0; l < 4; ++l, dst += 8) {
        const int i0 = qs[8 * ib + 2 * l] | ((qh[ib] << (8 - 2 * l)) & 256);
        const int i1 = qs[8 * ib + 2 * l + 1] | ((qh[ib] << (7 - 2 * l)) & 256);
        signed_points4(kIq3sGrid[size_t(i0)], kIq3sGrid[size_t(i1)], signs[4 * ib + l], db, dst);
      }
    }
  }
}

// [d f16][qs 32][qh u16 × 8]: an 11-bit grid index is qs[k] plus 3 bits of the sub-block's qh;
// qh bits 12..14 are the scale s (dl = d * (2s + 1)) and bit 15 the sign of the delta.
void iq1_s(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 50) {
    const float d = load_f16(src);
    const uint8_t* qs = src + 2;
    for (int ib = 0; ib < 8; ++ib) {
      const uint16_t qh = load_u16(src + 34 + 2 * ib);
      const float dl = d * float(2 * ((qh >> 12) & 7) + 1);
      const float delta = qh & 0x8000 ? -kIq1Delta : kIq1Delta;
      for (int l = 0; l < 4; ++l, dst += 8)
        shifted_point8(kIq1sGrid[size_t(qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8))], delta, dl, dst);
    }
  }
}

// [qs 32][qh 16][scales u16 × 4]: per group an 11-bit index (qs plus a qh nibble's low 3 bits)
// and a delta sign (the nibble's top bit); 3-bit scales per 16 values, and the block's f16
// scale spread over the top nibbles of the four scale words.
void iq1_m(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 56) {
    const uint8_t* qs = src;
    const uint8_t* qh = src + 32;
    uint16_t sc[4];
    for (int k = 0; k < 4; ++k) sc[k] = load_u16(src + 48 + 2 * k);
    const uint16_t d16 = uint16_t((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    const float d = f16_to_f32(d16);
    for (int ib = 0; ib < 8; ++ib) {
      const int shift = 6 * (ib % 2);
      const float dl[2] = {d * float(2 * ((sc[ib / 2] >> shift) & 7) + 1),
                           d * float(2 * ((sc[ib / 2] >> (shift + 3)) & 7) + 1)};
      for (int l = 0; l < 4; ++l, dst += 8) {
        const int nib = (qh[2 * ib + l / 2] >> (4 * (l % 2))) & 0xf;
        const int idx = qs[4 * ib + l] | ((nib & 7) << 8);
        shifted_point8(kIq1sGrid[size_t(idx)], nib & 8 ? -kIq1Delta : kIq1Delta, dl[l / 2], dst);
      }
    }
  }
}

}  // namespace fathom::ggml::blocks
