#pragma once
// Element types of tensors on disk and in memory, and exact scalar conversions.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace fathom {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  F8_E4M3,  // OCP e4m3fn (no inf; 0x7f/0xff are NaN), as in DeepSeek-V3's checkpoints
  I64,
  I32,
  U8,
  // Block formats (fathom's own; 32 values per block with an fp16 scale):
  Q8_0,  // block: f16 d, int8 q[32]; x = d * q
  Q4_0,  // block: f16 d, uint8 q[16] (low nibbles = 0..15, high = 16..31); x = d * (q - 8)
  // GGML's block formats, as GGUF files store them (decoded by io/ggml_quants; the CPU
  // kernels run them as stored). 32-value blocks:
  Q4_1, Q5_0, Q5_1, IQ4_NL,
  // 256-value super-blocks:
  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M,
};

// One of the GGML block formats above (not Q8_0/Q4_0, which fathom packs and runs itself).
bool is_ggml_block(DType t);

std::string_view dtype_name(DType t);
std::optional<DType> dtype_from_safetensors(std::string_view name);  // "F32", "BF16", ...
// Bytes of one element, or 0 for block formats.
size_t dtype_size(DType t);
// Values per block and bytes per block (1 and dtype_size for plain types).
int dtype_block_values(DType t);
size_t dtype_block_bytes(DType t);
// Bytes of `n` values; n must be a multiple of the block size.
size_t dtype_bytes(DType t, int64_t n);
// A block format named on the command line: "" or "none" → nullopt (keep the stored
// formats), "q8_0" → Q8_0, "q4_0" → Q4_0; anything else throws fathom::Error.
std::optional<DType> parse_block_quant(const std::string& q);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round-to-nearest-even, NaN kept NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float fp8_e4m3_to_f32(uint8_t v);
uint8_t f32_to_fp8_e4m3(float f);  // round-to-nearest-even, saturating to ±448

}  // namespace fathom
