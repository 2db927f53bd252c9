#pragma once
// Block-level dequantizers behind ggml::dequantize_row, one per GGML block type. Each reads
// `nb` consecutive blocks at `src` (packed, unaligned) and writes nb * block_values floats.
#include <cstdint>
#include <cstring>

#include "core/dtype.h"

namespace fathom::ggml::blocks {

// Little-endian loads from a packed block (GGUF data is little-endian; so is every host fathom
// builds for).
inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
inline float load_f16(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

// 32-value blocks (ggml_quants.cpp).
void q4_0(const uint8_t* src, float* dst, int64_t nb);
void q4_1(const uint8_t* src, float* dst, int64_t nb);
void q5_0(const uint8_t* src, float* dst, int64_t nb);
void q5_1(const uint8_t* src, float* dst, int64_t nb);
void q8_0(const uint8_t* src, float* dst, int64_t nb);
void iq4_nl(const uint8_t* src, float* dst, int64_t nb);

// 256-value super-blocks (ggml_kquants.cpp).
void q2_k(const uint8_t* src, float* dst, int64_t nb);
void q3_k(const uint8_t* src, float* dst, int64_t nb);
void q4_k(const uint8_t* src, float* dst, int64_t nb);
void q5_k(const uint8_t* src, float* dst, int64_t nb);
void q6_k(const uint8_t* src, float* dst, int64_t nb);
void q8_k(const uint8_t* src, float* dst, int64_t nb);
void iq4_xs(const uint8_t* src, float* dst, int64_t nb);

// 256-value lattice super-blocks (ggml_iquants.cpp).
void iq2_xxs(const uint8_t* src, float* dst, int64_t nb);
void iq2_xs(const uint8_t* src, float* dst, int64_t nb);
void iq2_s(const uint8_t* src, float* dst, int64_t nb);
void iq3_xxs(const uint8_t* src, float* dst, int64_t nb);
void iq3_s(const uint8_t* src, float* dst, int64_t nb);
void iq1_s(const uint8_t* src, float* dst, int64_t nb);
void iq1_m(const uint8_t* src, float* dst, int64_t nb);

}  // namespace fathom::ggml::blocks
