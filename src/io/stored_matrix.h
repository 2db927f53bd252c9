#pragma once
// A checkpoint's 2-D weight as stored, checked once for every reader of it: the loader
// (which may requantize, pack or use it in place) and `fathom quantize` (which streams it
// into a block format).
#include <cstdint>

#include "core/dtype.h"
#include "io/config.h"
#include "io/safetensors.h"

namespace fathom {

// A 2-D tensor as stored in a checkpoint, with its FP8 block scales when it has them.
struct StoredMatrix {
  DType dtype = DType::F32;           // F32, F16, BF16, F8_E4M3, Q8_0 or Q4_0
  int64_t rows = 0, cols = 0;         // [out, in]
  const void* data = nullptr;         // rows × cols values in the checkpoint's mapping
  // F8_E4M3 only: scale_inv [ceil(rows/block), ceil(cols/block)], value = fp8 · scale_inv.
  const float* block_scale = nullptr;
  int64_t block = 128;                // square FP8 block side
  const TensorView* tensor = nullptr;  // the weight itself
  const TensorView* scale = nullptr;   // F8_E4M3 only: `<name>_scale_inv`
};

// Checks the dtype (F32/F16/BF16/F8_E4M3/Q8_0/Q4_0; anything else is an Error naming the
// tensor) and, for F8_E4M3, the block scales: square blocks from cfg, `<name>_scale_inv`
// present, F32, shape [ceil(rows/block), ceil(cols/block)], 4-byte aligned. The tensor's own
// shape must already agree with what the model expects.
StoredMatrix stored_matrix(const TensorStore& store, const ModelConfig& cfg, const TensorView& t);

// The requantize rule shared by load-time --quant and `fathom quantize`: a Linear weight
// stored in another format is requantized to the block format `target` when its rows split
// into 32-value blocks; one whose rows do not keeps its stored format.
inline bool requantizes_to(DType stored, int64_t cols, DType target) { return stored != target && cols % 32 == 0; }

}  // namespace fathom
