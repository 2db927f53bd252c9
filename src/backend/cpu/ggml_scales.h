#pragma once
// The scales, mins and factors of GGML blocks (ggml_decode.h), shared by the scalar and the
// AVX2 decoders so that they round identically. Everything here has internal linkage: the
// AVX2 translation unit includes it inside its target region, with its own f16 conversion.
#include <cstdint>
#include <cstring>

#include "backend/cpu/ggml_decode.h"
#include "core/error.h"
#include "io/ggml_blocks.h"

namespace fathom::cpu::detail {
namespace {

inline uint16_t u16(const uint8_t* p) { return ggml::blocks::load_u16(p); }
inline uint32_t u32(const uint8_t* p) { return ggml::blocks::load_u32(p); }

// Q3_K: signed 6-bit scale of 16-value sub-block j.
inline int q3k_scale(const uint8_t* packed, int j) {
  const int lo = j < 8 ? (packed[j] & 0xf) : (packed[j - 8] >> 4);
  const int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// Q4_K/Q5_K: the eight 6-bit sub-block scales and mins from their 12 packed bytes, four bytes
// per word (byte j of s[0], s[1] is scale j, j + 4; likewise m for the mins).
struct K4Scales {
  uint32_t s[2], m[2];
  uint64_t scales8() const { return uint64_t(s[0]) | uint64_t(s[1]) << 32; }  // byte j: scale j
  uint64_t mins8() const { return uint64_t(m[0]) | uint64_t(m[1]) << 32; }    // byte j: min j
};
inline K4Scales k4_scales(const uint8_t* packed) {
  const uint32_t w0 = u32(packed), w1 = u32(packed + 4), w2 = u32(packed + 8);
  return {{w0 & 0x3f3f3f3f, (w2 & 0x0f0f0f0f) | (((w0 >> 6) & 0x03030303) << 4)},
          {w1 & 0x3f3f3f3f, ((w2 >> 4) & 0x0f0f0f0f) | (((w1 >> 6) & 0x03030303) << 4)}};
}

inline void set2(int16_t* v, int s32, int x) { v[2 * s32] = v[2 * s32 + 1] = int16_t(x); }

template <class F16>
[[gnu::always_inline]] inline void decode_scales_with(DType t, const uint8_t* b, DecodedBlock& o, F16 f16) {
  int16_t* sc = o.sc;
  int16_t* mi = o.mi;
  switch (t) {
    case DType::Q4_1: case DType::Q5_1:
      o.d = f16(b), o.dmin = -f16(b + 2);
      sc[0] = sc[1] = 1, mi[0] = mi[1] = 1;
      return;
    case DType::Q5_0: case DType::IQ4_NL: o.d = f16(b), sc[0] = sc[1] = 1; return;
    case DType::Q2_K:
      o.d = f16(b + 80), o.dmin = f16(b + 82);
      for (int s = 0; s < 16; ++s) sc[s] = int16_t(b[s] & 0xf), mi[s] = int16_t(b[s] >> 4);
      return;
    case DType::Q3_K:
      o.d = f16(b + 108);
      for (int s = 0; s < 16; ++s) sc[s] = int16_t(q3k_scale(b + 96, s));
      return;
    case DType::Q4_K: case DType::Q5_K: {
      o.d = f16(b), o.dmin = f16(b + 2);
      const K4Scales k = k4_scales(b + 4);
      for (int j = 0; j < 8; ++j) {
        set2(sc, j, int((k.scales8() >> (8 * j)) & 0xff));
        set2(mi, j, int((k.mins8() >> (8 * j)) & 0xff));
      }
      return;
    }
    case DType::Q6_K:  // q unsigned 0..63; the −32 is a min of 32·sc
      o.d = o.dmin = f16(b + 208);
      for (int s = 0; s < 16; ++s) sc[s] = int16_t(int8_t(b[192 + s])), mi[s] = int16_t(32 * sc[s]);
      return;
    case DType::IQ4_XS: {
      o.d = f16(b);
      const uint16_t h = u16(b + 2);
      for (int j = 0; j < 8; ++j)
        set2(sc, j, (((b[4 + j / 2] >> (4 * (j % 2))) & 0xf) | (((h >> (2 * j)) & 3) << 4)) - 32);
      return;
    }
    // The lattices' sub-block scale (0.5 + s)·c is (2s + 1)·c/2.
    case DType::IQ2_XXS:
      o.d = f16(b) * 0.125f;
      for (int j = 0; j < 8; ++j) set2(sc, j, 2 * int(u32(b + 2 + 8 * j + 4) >> 28) + 1);
      return;
    case DType::IQ2_XS: case DType::IQ2_S: {
      o.d = f16(b) * 0.125f;
      const uint8_t* s = b + (t == DType::IQ2_XS ? 66 : 74);
      for (int j = 0; j < 8; ++j) sc[2 * j] = int16_t(2 * (s[j] & 0xf) + 1), sc[2 * j + 1] = int16_t(2 * (s[j] >> 4) + 1);
      return;
    }
    case DType::IQ3_XXS:
      o.d = f16(b) * 0.25f;
      for (int j = 0; j < 8; ++j) set2(sc, j, 2 * int(u32(b + 66 + 4 * j) >> 28) + 1);
      return;
    case DType::IQ3_S:
      o.d = f16(b);
      for (int j = 0; j < 8; ++j) set2(sc, j, 2 * (j % 2 ? b[106 + j / 2] >> 4 : b[106 + j / 2] & 0xf) + 1);
      return;
    case DType::IQ1_S:
      o.d = f16(b) * 0.125f;
      for (int j = 0; j < 8; ++j) set2(sc, j, 2 * ((u16(b + 34 + 2 * j) >> 12) & 7) + 1);
      return;
    case DType::IQ1_M: {
      uint16_t w[4];
      for (int k = 0; k < 4; ++k) w[k] = u16(b + 48 + 2 * k);
      const uint16_t h = uint16_t((w[0] >> 12) | ((w[1] >> 8) & 0x00f0) | ((w[2] >> 4) & 0x0f00) | (w[3] & 0xf000));
      o.d = f16(reinterpret_cast<const uint8_t*>(&h)) * 0.125f;
      for (int s = 0; s < 16; ++s) sc[s] = int16_t(2 * ((w[s / 4] >> (3 * (s % 4))) & 7) + 1);
      return;
    }
    default: fail("no GGML decoder for dtype {}", dtype_name(t));
  }
}

}  // namespace
}  // namespace fathom::cpu::detail
