#include "backend/cpu/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/thread_pool.h"

namespace fathom::cpu {

namespace {

void quantize_q8_0(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t b = 0; b < n / 32; ++b, dst += 34) {
    const float* xb = x + b * 32;
    float amax = 0.f;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const uint16_t dh = f32_to_f16(amax / 127.0f);
    const float d = f16_to_f32(dh);
    const float id = d != 0.f ? 1.0f / d : 0.f;
    std::memcpy(dst, &dh, 2);
    for (int i = 0; i < 32; ++i) {
      const float q = std::clamp(std::round(xb[i] * id), -127.0f, 127.0f);
      dst[2 + i] = uint8_t(int8_t(q));
    }
  }
}

void quantize_q4_0(const float* x, int64_t n, uint8_t* dst) {
  for (int64_t b = 0; b < n / 32; ++b, dst += 18) {
    const float* xb = x + b * 32;
    float amax = 0.f, max = 0.f;
    for (int i = 0; i < 32; ++i)
      if (std::fabs(xb[i]) > amax) { amax = std::fabs(xb[i]); max = xb[i]; }
    const uint16_t dh = f32_to_f16(max / -8.0f);
    const float d = f16_to_f32(dh);
    const float id = d != 0.f ? 1.0f / d : 0.f;
    std::memcpy(dst, &dh, 2);
    uint8_t q[32];
    for (int i = 0; i < 32; ++i) q[i] = uint8_t(std::clamp(std::floor(xb[i] * id + 8.5f), 0.0f, 15.0f));
    for (int i = 0; i < 16; ++i) dst[2 + i] = uint8_t(q[i] | q[16 + i] << 4);
  }
}

}  // namespace

void quantize_row(DType fmt, const float* src, int64_t n, void* dst) {
  FATHOM_CHECK(n % 32 == 0, "quantize_row: {} values is not a multiple of 32", n);
  switch (fmt) {
    case DType::Q8_0: return quantize_q8_0(src, n, static_cast<uint8_t*>(dst));
    case DType::Q4_0: return quantize_q4_0(src, n, static_cast<uint8_t*>(dst));
    default: fail("quantize_row: cannot quantize to {}", dtype_name(fmt));
  }
}

uint8_t f32_to_e4m3(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint8_t sign = uint8_t((u >> 24) & 0x80);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return 0x7f;             // NaN
  if (u >= 0x43e00000u) return sign | 0x7e;     // ≥ 448: saturate
  if (u < 0x3c800000u) {                        // < 2^-6: subnormal step 2^-9, RNE
    float a;
    std::memcpy(&a, &u, 4);
    return sign | uint8_t(std::nearbyint(a * 512.0f));  // 8 rounds up into the min normal
  }
  u += 0x7ffffu + ((u >> 20) & 1u);             // round the mantissa to 3 bits, RNE
  const uint32_t e = (u >> 23) - 120, m = (u >> 20) & 7;
  const uint32_t code = e << 3 | m;
  return sign | uint8_t(std::min<uint32_t>(code, 0x7e));
}

void quantize_fp8_blocks(const float* src, int64_t rows, int64_t cols, uint8_t* dst, float* scale_inv,
                         int64_t block, ThreadPool* pool) {
  FATHOM_CHECK(block > 0, "quantize_fp8_blocks: block {}", block);
  const int64_t rb = (rows + block - 1) / block, cb = (cols + block - 1) / block;
  auto do_rows = [&](int64_t b0, int64_t b1, int) {
    for (int64_t bi = b0; bi < b1; ++bi) {
      const int64_t r0 = bi * block, r1 = std::min(rows, r0 + block);
      for (int64_t bj = 0; bj < cb; ++bj) {
        const int64_t c0 = bj * block, c1 = std::min(cols, c0 + block);
        float amax = 0.f;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(src[r * cols + c]));
        const float s = amax > 0.f ? amax / 448.0f : 1.0f;
        scale_inv[bi * cb + bj] = s;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t c = c0; c < c1; ++c) dst[r * cols + c] = f32_to_e4m3(src[r * cols + c] / s);
      }
    }
  };
  if (pool) pool->parallel_for(rb, 1, do_rows);
  else do_rows(0, rb, 0);
}

}  // namespace fathom::cpu
