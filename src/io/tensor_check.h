#pragma once
// Load-time checks of a tensor's values, so that damaged weights are refused with a message
// naming the tensor instead of producing NaN logits or fluent nonsense.
#include <cstdint>

#include "io/safetensors.h"

namespace fathom {

struct ValueCheck {
  // Every value, not just a sample (--check-weights): a sample of kSampleValues values,
  // evenly spread, catches a tensor that is wholly or largely damaged at a bounded cost.
  bool full = false;
  // A weight matrix: also refused when its F16 values look like BF16 data labelled F16.
  bool matrix = false;
};
inline constexpr int64_t kSampleValues = 1024;

// Throws an Error naming the tensor when a checked value is NaN or infinite (F32, F16, BF16,
// F8_E4M3, and the f16 block scales of Q8_0/Q4_0; integer tensors are not checked), or when
// a matrix's F16 values have the signature of relabelled BF16.
void check_values(const TensorView& t, const ValueCheck& c);

}  // namespace fathom
