#include "core/dtype.h"

#include <cmath>

#include "core/error.h"

namespace fathom {


std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F8_E4M3: return "F8_E4M3";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::Q8_0: return "Q8_0";
    case DType::Q4_0: return "Q4_0";
    default: break;
  }
  if (const GgmlBlock* g = ggml_block(t)) return g->name;
  return "?";
}

std::optional<DType> dtype_from_safetensors(std::string_view n) {
  if (n == "F32") return DType::F32;
  if (n == "F16") return DType::F16;
  if (n == "BF16") return DType::BF16;
  if (n == "F8_E4M3") return DType::F8_E4M3;
  if (n == "I64") return DType::I64;
  if (n == "I32") return DType::I32;
  if (n == "U8") return DType::U8;
  if (n == "Q8_0") return DType::Q8_0;
  if (n == "Q4_0") return DType::Q4_0;
  return std::nullopt;
}

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: return 2;
    case DType::F8_E4M3: case DType::U8: return 1;
    case DType::I64: return 8;
    default: return 0;
  }
}

int dtype_block_values(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: return 32;
    default: return ggml_block(t) ? ggml_block(t)->values : 1;
  }
}

size_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::Q8_0: return 2 + 32;
    case DType::Q4_0: return 2 + 16;
    default: return ggml_block(t) ? ggml_block(t)->bytes : dtype_size(t);
  }
}

size_t dtype_bytes(DType t, int64_t n) {
  return size_t(n / dtype_block_values(t)) * dtype_block_bytes(t);
}

std::optional<DType> parse_block_quant(const std::string& q) {
  if (q.empty() || q == "none") return std::nullopt;
  if (q == "q8_0") return DType::Q8_0;
  if (q == "q4_0") return DType::Q4_0;
  fail("unknown quant '{}' (supported: q8_0, q4_0)", q);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: renormalize
      int e = -1;
      do { ++e; man <<= 1; } while (!(man & 0x400));
      u = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 112) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00);  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // overflow -> inf (RNE boundary 65520)
  if (a < 0x38800000u) {  // subnormal or zero in f16
    float af;
    std::memcpy(&af, &a, 4);
    // 2^-24 is the f16 subnormal quantum; nearbyint rounds to even.
    return uint16_t(sign | uint32_t(std::nearbyint(af * 16777216.0f)));
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u) - (112u << 23);
  return uint16_t(sign | (r >> 13));
}

float fp8_e4m3_to_f32(uint8_t v) {
  uint32_t sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
  float r;
  if (exp == 15 && man == 7) return std::nanf("");
  if (exp == 0) r = std::ldexp(float(man), -9);  // subnormal: man/8 * 2^-6
  else r = std::ldexp(1.0f + float(man) / 8.0f, int(exp) - 7);
  return sign ? -r : r;
}

uint8_t f32_to_fp8_e4m3(float f) {
  if (std::isnan(f)) return 0x7f;
  uint8_t sign = std::signbit(f) ? 0x80 : 0;
  float a = std::fabs(f);
  if (a >= 448.0f) return sign | 0x7e;
  // Nearest representable by search over the 127 finite magnitudes (exact, not hot).
  uint8_t best = 0;
  float bestd = a;
  for (uint8_t c = 1; c < 0x7f; ++c) {
    float d = std::fabs(fp8_e4m3_to_f32(c) - a);
    if (d < bestd || (d == bestd && (c & 1) == 0 && (best & 1) == 1)) { best = c; bestd = d; }
  }
  return sign | best;
}

}  // namespace fathom
