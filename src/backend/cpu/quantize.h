#pragma once
// Weight quantization: f32 rows to Q8_0/Q4_0 blocks, and f32 matrices to FP8 e4m3 with
// 128×128 block scales (the layout of DeepSeek-V3's checkpoints).
#include <cstdint>

#include "core/dtype.h"

namespace fathom {
class ThreadPool;
}

namespace fathom::cpu {

// Quantizes n values (n % 32 == 0) into dtype_bytes(fmt, n) bytes at dst. Round to nearest:
//   Q8_0: d = amax/127, q = round(x/d) in [-127, 127]
//   Q4_0: d = max/-8 (max: the value of largest magnitude, with its sign),
//         q = clamp(round(x/d + 8), 0, 15)
// d is stored as f16 and q is computed against the stored d, so |x - d·q| ≤ |d|/2 except
// where Q4_0 clamps at 15 (x/d in (7.5, 8]: error ≤ |d|).
void quantize_row(DType fmt, const float* src, int64_t n, void* dst);

// src [rows, cols] f32 → dst [rows, cols] e4m3 and scale_inv [ceil(rows/block), ceil(cols/block)]
// with scale_inv = amax/448 per block (1 for an all-zero block), so that src ≈ e4m3·scale_inv.
// Rounds to nearest even, saturating at ±448. Parallel over row blocks when pool is given.
void quantize_fp8_blocks(const float* src, int64_t rows, int64_t cols, uint8_t* dst, float* scale_inv,
                         int64_t block = 128, ThreadPool* pool = nullptr);

// Fast exact equivalent of f32_to_fp8_e4m3 (round to nearest even, saturating, NaN → 0x7f).
uint8_t f32_to_e4m3(float f);

}  // namespace fathom::cpu
