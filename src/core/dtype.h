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

// GGML's block formats above: their GGUF tensor type id, name, and values and bytes per
// block, as ggml defines them (io/ggml_quants maps GGUF types through this table).
struct GgmlBlock {
  DType dtype;
  uint32_t ggml_id;
  const char* name;
  int values;
  size_t bytes;
};
inline constexpr GgmlBlock kGgmlBlocks[] = {
    {DType::Q4_1, 3, "Q4_1", 32, 20},          {DType::Q5_0, 6, "Q5_0", 32, 22},
    {DType::Q5_1, 7, "Q5_1", 32, 24},          {DType::IQ4_NL, 20, "IQ4_NL", 32, 18},
    {DType::Q2_K, 10, "Q2_K", 256, 84},        {DType::Q3_K, 11, "Q3_K", 256, 110},
    {DType::Q4_K, 12, "Q4_K", 256, 144},       {DType::Q5_K, 13, "Q5_K", 256, 176},
    {DType::Q6_K, 14, "Q6_K", 256, 210},       {DType::IQ4_XS, 23, "IQ4_XS", 256, 136},
    {DType::IQ3_XXS, 18, "IQ3_XXS", 256, 98},  {DType::IQ3_S, 21, "IQ3_S", 256, 110},
    {DType::IQ2_XXS, 16, "IQ2_XXS", 256, 66},  {DType::IQ2_XS, 17, "IQ2_XS", 256, 74},
    {DType::IQ2_S, 22, "IQ2_S", 256, 82},      {DType::IQ1_S, 19, "IQ1_S", 256, 50},
    {DType::IQ1_M, 29, "IQ1_M", 256, 56},
};

// The table entry of a GGML block format, or null (for Q8_0/Q4_0 too, which fathom packs and
// runs itself).
constexpr const GgmlBlock* ggml_block(DType t) {
  for (const GgmlBlock& g : kGgmlBlocks)
    if (g.dtype == t) return &g;
  return nullptr;
}
constexpr bool is_ggml_block(DType t) { return ggml_block(t) != nullptr; }

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
