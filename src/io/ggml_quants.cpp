// GGML type table, the row dispatcher, plain element types and the 32-value block types.
#include "io/ggml_quants.h"

#include <array>

#include "core/error.h"
#include "io/ggml_blocks.h"

namespace fathom::ggml {
namespace {

constexpr int64_t kQK = 32;    // values per legacy block
constexpr int64_t kQKK = 256;  // values per K/IQ super-block

// Indexed by the GGUF type id; a null name marks an unused id.
constexpr std::array<TypeInfo, 31> kTypes = {{
    {"F32", 1, 4, true},
    {"F16", 1, 2, true},
    {"Q4_0", kQK, 2 + 16, true},
    {"Q4_1", kQK, 2 + 2 + 16, true},
    {nullptr, 0, 0, false},  // Q4_2 (removed)
    {nullptr, 0, 0, false},  // Q4_3 (removed)
    {"Q5_0", kQK, 2 + 4 + 16, true},
    {"Q5_1", kQK, 2 + 2 + 4 + 16, true},
    {"Q8_0", kQK, 2 + 32, true},
    {"Q8_1", kQK, 2 + 2 + 32, false},  // an activation format; ggml has no row converter for it
    {"Q2_K", kQKK, 16 + 64 + 2 + 2, true},
    {"Q3_K", kQKK, 32 + 64 + 12 + 2, true},
    {"Q4_K", kQKK, 2 + 2 + 12 + 128, true},
    {"Q5_K", kQKK, 2 + 2 + 12 + 32 + 128, true},
    {"Q6_K", kQKK, 128 + 64 + 16 + 2, true},
    {"Q8_K", kQKK, 4 + 256 + 2 * 16, true},
    {"IQ2_XXS", kQKK, 2 + 2 * 32, true},
    {"IQ2_XS", kQKK, 2 + 2 * 32 + 8, true},
    {"IQ3_XXS", kQKK, 2 + 96, true},
    {"IQ1_S", kQKK, 2 + 32 + 2 * 8, true},
    {"IQ4_NL", kQK, 2 + 16, true},
    {"IQ3_S", kQKK, 2 + 64 + 8 + 32 + 4, true},
    {"IQ2_S", kQKK, 2 + 64 + 8 + 8, true},
    {"IQ4_XS", kQKK, 2 + 2 + 4 + 128, true},
    {"I8", 1, 1, true},
    {"I16", 1, 2, true},
    {"I32", 1, 4, true},
    {"I64", 1, 8, true},
    {"F64", 1, 8, true},
    {"IQ1_M", kQKK, 32 + 16 + 8, true},
    {"BF16", 1, 2, true},
}};

// Plain element types: one conversion per value.
template <typename T, typename F>
void convert_each(const uint8_t* src, float* dst, int64_t n, F to_float) {
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * int64_t(sizeof(T)), sizeof(T));
    dst[i] = to_float(v);
  }
}

}  // namespace

const TypeInfo* type_info(uint32_t t) {
  if (t >= kTypes.size() || kTypes[t].name == nullptr) return nullptr;
  return &kTypes[t];
}

int64_t row_bytes(Type t, int64_t n) {
  const TypeInfo* info = type_info(t);
  if (!info) fail("unknown GGML type id {}", uint32_t(t));
  if (n < 0 || n % info->block_values != 0)
    fail("GGUF type {}: {} values is not a whole number of {}-value blocks", info->name, n,
         info->block_values);
  return n / info->block_values * info->block_bytes;
}

std::optional<DType> block_dtype(Type t) {
  if (t == Type::Q8_0) return DType::Q8_0;
  if (t == Type::Q4_0) return DType::Q4_0;
  for (const GgmlBlock& g : kGgmlBlocks)
    if (g.ggml_id == uint32_t(t)) return g.dtype;
  return std::nullopt;
}

Type ggml_type(DType t) {
  if (t == DType::Q8_0) return Type::Q8_0;
  if (t == DType::Q4_0) return Type::Q4_0;
  if (const GgmlBlock* g = ggml_block(t)) return Type(g->ggml_id);
  fail("dtype {} is not a GGML block format", dtype_name(t));
}

void dequantize_row(Type t, const void* src_v, float* dst, int64_t n) {
  const TypeInfo* info = type_info(t);
  if (!info) fail("unknown GGML type id {}", uint32_t(t));
  if (!info->supported) fail("GGUF type {} is not supported yet", info->name);
  if (n < 0 || n % info->block_values != 0)
    fail("GGUF type {}: {} values is not a whole number of {}-value blocks", info->name, n,
         info->block_values);
  if (n == 0) return;  // an empty tensor: its data pointer may be null
  const auto* src = static_cast<const uint8_t*>(src_v);
  const int64_t nb = n / info->block_values;
  switch (t) {
    case Type::F32: std::memcpy(dst, src, size_t(n) * 4); return;
    case Type::F16: convert_each<uint16_t>(src, dst, n, [](uint16_t v) { return f16_to_f32(v); }); return;
    case Type::BF16: convert_each<uint16_t>(src, dst, n, [](uint16_t v) { return bf16_to_f32(v); }); return;
    case Type::F64: convert_each<double>(src, dst, n, [](double v) { return float(v); }); return;
    case Type::I8: convert_each<int8_t>(src, dst, n, [](int8_t v) { return float(v); }); return;
    case Type::I16: convert_each<int16_t>(src, dst, n, [](int16_t v) { return float(v); }); return;
    case Type::I32: convert_each<int32_t>(src, dst, n, [](int32_t v) { return float(v); }); return;
    case Type::I64: convert_each<int64_t>(src, dst, n, [](int64_t v) { return float(v); }); return;
    case Type::Q4_0: blocks::q4_0(src, dst, nb); return;
    case Type::Q4_1: blocks::q4_1(src, dst, nb); return;
    case Type::Q5_0: blocks::q5_0(src, dst, nb); return;
    case Type::Q5_1: blocks::q5_1(src, dst, nb); return;
    case Type::Q8_0: blocks::q8_0(src, dst, nb); return;
    case Type::IQ4_NL: blocks::iq4_nl(src, dst, nb); return;
    case Type::Q2_K: blocks::q2_k(src, dst, nb); return;
    case Type::Q3_K: blocks::q3_k(src, dst, nb); return;
    case Type::Q4_K: blocks::q4_k(src, dst, nb); return;
    case Type::Q5_K: blocks::q5_k(src, dst, nb); return;
    case Type::Q6_K: blocks::q6_k(src, dst, nb); return;
    case Type::Q8_K: blocks::q8_k(src, dst, nb); return;
    case Type::IQ4_XS: blocks::iq4_xs(src, dst, nb); return;
    case Type::IQ2_XXS: blocks::iq2_xxs(src, dst, nb); return;
    case Type::IQ2_XS: blocks::iq2_xs(src, dst, nb); return;
    case Type::IQ2_S: blocks::iq2_s(src, dst, nb); return;
    case Type::IQ3_XXS: blocks::iq3_xxs(src, dst, nb); return;
    case Type::IQ3_S: blocks::iq3_s(src, dst, nb); return;
    case Type::IQ1_S: blocks::iq1_s(src, dst, nb); return;
    case Type::IQ1_M: blocks::iq1_m(src, dst, nb); return;
    default: break;
  }
  fail("GGUF type {} is not supported yet", info->name);
}

namespace blocks {

// In every legacy block, byte j holds value j in its low nibble and value j + 16 in its high one.

// [d f16][qs 16]: x = (q - 8) * d
void q4_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 18, dst += kQK) {
    const float d = load_f16(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = float((qs[j] & 0xf) - 8) * d;
      dst[j + 16] = float((qs[j] >> 4) - 8) * d;
    }
  }
}

// [d f16][m f16][qs 16]: x = q * d + m
void q4_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 20, dst += kQK) {
    const float d = load_f16(src);
    const float m = load_f16(src + 2);
    const uint8_t* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      dst[j] = float(qs[j] & 0xf) * d + m;
      dst[j + 16] = float(qs[j] >> 4) * d + m;
    }
  }
}

// [d f16][qh u32][qs 16]: bit i of qh is the fifth bit of value i; x = (q - 16) * d
void q5_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 22, dst += kQK) {
    const float d = load_f16(src);
    const uint32_t qh = load_u32(src + 2);
    const uint8_t* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int hi0 = int((qh >> j) & 1) << 4;
      const int hi1 = int((qh >> (j + 16)) & 1) << 4;
      dst[j] = float(((qs[j] & 0xf) | hi0) - 16) * d;
      dst[j + 16] = float(((qs[j] >> 4) | hi1) - 16) * d;
    }
  }
}

// [d f16][m f16][qh u32][qs 16]: x = q * d + m
void q5_1(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 24, dst += kQK) {
    const float d = load_f16(src);
    const float m = load_f16(src + 2);
    const uint32_t qh = load_u32(src + 4);
    const uint8_t* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int hi0 = int((qh >> j) & 1) << 4;
      const int hi1 = int((qh >> (j + 16)) & 1) << 4;
      dst[j] = float((qs[j] & 0xf) | hi0) * d + m;
      dst[j + 16] = float((qs[j] >> 4) | hi1) * d + m;
    }
  }
}

// [d f16][qs int8 32]: x = q * d
void q8_0(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 34, dst += kQK) {
    const float d = load_f16(src);
    const auto* qs = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) dst[j] = float(qs[j]) * d;
  }
}

// [d f16][qs 16]: x = d * level[q]
void iq4_nl(const uint8_t* src, float* dst, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, src += 18, dst += kQK) {
    const float d = load_f16(src);
    const uint8_t* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * float(kIQ4NLValues[qs[j] & 0xf]);
      dst[j + 16] = d * float(kIQ4NLValues[qs[j] >> 4]);
    }
  }
}

}  // namespace blocks
}  // namespace fathom::ggml
