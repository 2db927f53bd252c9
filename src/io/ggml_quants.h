#pragma once
// GGML tensor types as GGUF files store them, and their scalar dequantization to f32.
// Every dequantizer reproduces ggml's reference row converters bit for bit: the same fp16
// scale conversion, the same integer arithmetic and the same float operations in the same order.
#include <cstdint>
#include <optional>

#include "core/dtype.h"

namespace fathom::ggml {

// The numeric ids are the GGUF `type` field of a tensor info (ids 4 and 5, the removed
// Q4_2/Q4_3, are unused).
enum class Type : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
};

struct TypeInfo {
  const char* name;      // "Q4_K", as ggml and gguf-py spell it
  int64_t block_values;  // values per block (1 for plain element types)
  int64_t block_bytes;   // bytes per block
  bool supported;        // dequantize_row handles it
};

// Null for an id that is not a GGML type.
const TypeInfo* type_info(uint32_t t);
inline const TypeInfo* type_info(Type t) { return type_info(uint32_t(t)); }

// Bytes of `n` values of type t; n must be a multiple of the block size (throws fathom::Error
// otherwise, or for an unknown type).
int64_t row_bytes(Type t, int64_t n);

// dst[n] = the values of the blocks at src (row_bytes(t, n) bytes, any alignment).
// n must be a multiple of block_values; throws fathom::Error for an unsupported type.
void dequantize_row(Type t, const void* src, float* dst, int64_t n);

// The DType holding a GGML type's blocks as stored: Q8_0, Q4_0 and every is_ggml_block type
// (nullopt for plain element types and Q8_K/Q8_1). ggml_type is its inverse.
std::optional<DType> block_dtype(Type t);
Type ggml_type(DType t);  // throws fathom::Error for a DType that is not a GGML block format

// The 16 non-linear levels of IQ4_NL and IQ4_XS (a constant of the format).
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

}  // namespace fathom::ggml
