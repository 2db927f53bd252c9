// Scalar decoders of the GGML block formats into int8 quants with per-16 scales and mins
// (ggml_decode.h). The bit layouts are those of io/ggml_kquants.cpp and io/ggml_iquants.cpp,
// whose float dequantizers are tested bit-exact against ggml.
#include "backend/cpu/ggml_decode.h"
#include "backend/cpu/ggml_scales.h"
#include "backend/cpu/kernels.h"

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/ggml_iq_grids.h"
#include "io/ggml_quants.h"

namespace fathom::cpu::detail {
namespace {

using namespace ggml::iq;

// 8 values of a grid point with signs (bit j set: value j negative).
void signed8(uint64_t point, uint8_t signs, int8_t* q) {
  for (int j = 0; j < 8; ++j) {
    const int v = int((point >> (8 * j)) & 0xff);
    q[j] = int8_t((signs >> j) & 1 ? -v : v);
  }
}

// IQ1: 8·grid ± 1 (the delta's sign), so that a = dl/8.
void shifted8(uint64_t point, bool negative_delta, int8_t* q) {
  for (int j = 0; j < 8; ++j) q[j] = int8_t(8 * int(int8_t((point >> (8 * j)) & 0xff)) + (negative_delta ? -1 : 1));
}


}  // namespace


void decode_scales(DType t, const uint8_t* b, DecodedBlock& o) {
  decode_scales_with(t, b, o, [](const uint8_t* p) { return f16_to_f32(u16(p)); });
}

void quantize_acts_ggml(const float* x, int64_t K, int nv, int8_t* q, float* d, int16_t* s16) {
  for (int64_t b = 0; b < K / nv; ++b) quantize_act_block(x + b * nv, nv, q + b * nv, d + b);
  for (int64_t g = 0; g < K / 16; ++g) {
    int sum = 0;
    for (int e = 0; e < 16; ++e) sum += q[16 * g + e];
    s16[g] = int16_t(sum);
  }
}

void decode_block_scalar(DType t, const uint8_t* b, DecodedBlock& o) {
  decode_scales(t, b, o);
  int8_t* q = o.q;
  switch (t) {
    case DType::Q4_1:
      for (int j = 0; j < 16; ++j) q[j] = int8_t(b[4 + j] & 0xf), q[j + 16] = int8_t(b[4 + j] >> 4);
      return;
    case DType::Q5_0: case DType::Q5_1: {
      const int off = t == DType::Q5_0 ? 2 : 4;
      const uint32_t qh = u32(b + off);
      const uint8_t* qs = b + off + 4;
      const int bias = t == DType::Q5_0 ? 16 : 0;
      for (int j = 0; j < 16; ++j) {
        q[j] = int8_t(((qs[j] & 0xf) | (((qh >> j) & 1) << 4)) - bias);
        q[j + 16] = int8_t(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - bias);
      }
      return;
    }
    case DType::IQ4_NL:
      for (int j = 0; j < 16; ++j)
        q[j] = ggml::kIQ4NLValues[b[2 + j] & 0xf], q[j + 16] = ggml::kIQ4NLValues[b[2 + j] >> 4];
      return;
    case DType::Q2_K:
      // 16-value chunk s: half s/8, 2-bit field (s%8)/2, bytes 16·(s%2).. of that half's 32.
      for (int s = 0; s < 16; ++s) {
        const uint8_t* qs = b + 16 + 32 * (s / 8) + 16 * (s % 2);
        const int shift = 2 * ((s % 8) / 2);
        for (int l = 0; l < 16; ++l) q[16 * s + l] = int8_t((qs[l] >> shift) & 3);
      }
      return;
    case DType::Q3_K:
      for (int s = 0; s < 16; ++s) {
        const int half = s / 8, field = (s % 8) / 2, part = s % 2, bit = 4 * half + field;
        const uint8_t* qs = b + 32 + 32 * half + 16 * part;
        const uint8_t* hm = b + 16 * part;
        for (int l = 0; l < 16; ++l)
          q[16 * s + l] = int8_t(((qs[l] >> (2 * field)) & 3) - ((hm[l] >> bit) & 1 ? 0 : 4));
      }
      return;
    case DType::Q4_K:
      for (int g = 0; g < 4; ++g)
        for (int l = 0; l < 32; ++l) {
          q[64 * g + l] = int8_t(b[16 + 32 * g + l] & 0xf);
          q[64 * g + 32 + l] = int8_t(b[16 + 32 * g + l] >> 4);
        }
      return;
    case DType::Q5_K:
      for (int g = 0; g < 4; ++g)
        for (int l = 0; l < 32; ++l) {
          const uint8_t qs = b[48 + 32 * g + l], qh = b[16 + l];
          q[64 * g + l] = int8_t((qs & 0xf) | (((qh >> (2 * g)) & 1) << 4));
          q[64 * g + 32 + l] = int8_t((qs >> 4) | (((qh >> (2 * g + 1)) & 1) << 4));
        }
      return;
    case DType::Q6_K:
      for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b + 64 * half;
        const uint8_t* qh = b + 128 + 32 * half;
        int8_t* o = q + 128 * half;
        for (int l = 0; l < 32; ++l) {
          o[l] = int8_t((ql[l] & 0xf) | ((qh[l] & 3) << 4));
          o[l + 32] = int8_t((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4));
          o[l + 64] = int8_t((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
          o[l + 96] = int8_t((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
      }
      return;
    case DType::IQ4_XS:
      for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 16; ++l) {
          q[32 * j + l] = ggml::kIQ4NLValues[b[8 + 16 * j + l] & 0xf];
          q[32 * j + 16 + l] = ggml::kIQ4NLValues[b[8 + 16 * j + l] >> 4];
        }
      return;
    case DType::IQ2_XXS:
      for (int j = 0; j < 8; ++j) {
        const uint8_t* sub = b + 2 + 8 * j;
        const uint32_t aux = u32(sub + 4);
        for (int l = 0; l < 4; ++l) signed8(kIq2xxsGrid[sub[l]], signs_from7(aux >> (7 * l)), q + 32 * j + 8 * l);
      }
      return;
    case DType::IQ2_XS:
      for (int k = 0; k < 32; ++k) {
        const uint16_t v = u16(b + 2 + 2 * k);
        signed8(kIq2xsGrid[v & 511], signs_from7(v >> 9), q + 8 * k);
      }
      return;
    case DType::IQ2_S:
      for (int k = 0; k < 32; ++k) {
        const int idx = b[2 + k] | ((b[66 + k / 4] << (8 - 2 * (k % 4))) & 0x300);
        signed8(kIq2sGrid[size_t(idx)], b[34 + k], q + 8 * k);
      }
      return;
    case DType::IQ3_XXS:
      for (int j = 0; j < 8; ++j) {
        const uint32_t aux = u32(b + 66 + 4 * j);
        for (int l = 0; l < 4; ++l) {
          const uint64_t p = uint64_t(kIq3xxsGrid[b[2 + 8 * j + 2 * l]]) |
                             uint64_t(kIq3xxsGrid[b[2 + 8 * j + 2 * l + 1]]) << 32;
          signed8(p, signs_from7(aux >> (7 * l)), q + 32 * j + 8 * l);
        }
      }
      return;
    case DType::IQ3_S:
      for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 4; ++l) {
          const uint8_t* qs = b + 2 + 8 * j + 2 * l;
          const int qh = b[66 + j];
          const int i0 = qs[0] | ((qh << (8 - 2 * l)) & 256), i1 = qs[1] | ((qh << (7 - 2 * l)) & 256);
          const uint64_t p = uint64_t(kIq3sGrid[size_t(i0)]) | uint64_t(kIq3sGrid[size_t(i1)]) << 32;
          signed8(p, b[74 + 4 * j + l], q + 32 * j + 8 * l);
        }
      return;
    case DType::IQ1_S:
      for (int j = 0; j < 8; ++j) {
        const uint16_t qh = u16(b + 34 + 2 * j);
        for (int l = 0; l < 4; ++l)
          shifted8(kIq1sGrid[size_t(b[2 + 4 * j + l] | (((qh >> (3 * l)) & 7) << 8))], qh & 0x8000, q + 32 * j + 8 * l);
      }
      return;
    case DType::IQ1_M:
      for (int k = 0; k < 32; ++k) {
        const int nib = (b[32 + k / 2] >> (4 * (k % 2))) & 0xf;
        shifted8(kIq1sGrid[size_t(b[k] | ((nib & 7) << 8))], nib & 8, q + 8 * k);
      }
      return;
    default: fail("no GGML decoder for dtype {}", dtype_name(t));
  }
}

}  // namespace fathom::cpu::detail
