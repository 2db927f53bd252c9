#include "io/tensor_check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace fathom {

namespace {

// A value's bits, widened; non-finite is decided on the bits (all-ones exponent), which is
// exact for every format and avoids converting each value in a full scan.
struct Reader {
  const uint8_t* p;
  DType dtype;
  size_t stride;  // bytes between checked values: an element, or a block for Q8_0/Q4_0

  uint32_t bits(int64_t i) const {
    const uint8_t* q = p + size_t(i) * stride;
    uint32_t u = 0;
    switch (dtype) {
      case DType::F32: std::memcpy(&u, q, 4); return u;
      case DType::F8_E4M3: return *q;
      default: {  // F16, BF16, and the f16 scale that starts a Q8_0/Q4_0 block
        uint16_t h;
        std::memcpy(&h, q, 2);
        return h;
      }
    }
  }
  bool finite(uint32_t u) const {
    switch (dtype) {
      case DType::F32: return (u & 0x7f800000u) != 0x7f800000u;
      case DType::BF16: return (u & 0x7f80u) != 0x7f80u;
      case DType::F8_E4M3: return (u & 0x7fu) != 0x7fu;  // e4m3fn has no inf; S.1111.111 is NaN
      default: return (u & 0x7c00u) != 0x7c00u;          // f16
    }
  }
  float value(uint32_t u) const {
    switch (dtype) {
      case DType::F32: { float f; std::memcpy(&f, &u, 4); return f; }
      case DType::BF16: return bf16_to_f32(uint16_t(u));
      case DType::F8_E4M3: return fp8_e4m3_to_f32(uint8_t(u));
      default: return f16_to_f32(uint16_t(u));
    }
  }
};

// BF16 bit patterns read as F16: the f16 exponent is the top 5 bits of the bf16 one, so every
// bf16 magnitude in [2^-23, 2^9) reads as an f16 magnitude in [1/4, 4). Trained weight
// matrices spread over many more binades (most |w| < 1/4), so nearly all samples in that
// band, with enough distinct values to rule out a constant matrix, is the signature.
void check_not_relabelled_bf16(const TensorView& t, const std::vector<float>& samples) {
  std::vector<float> mags;
  for (float v : samples)
    if (v != 0 && std::isfinite(v)) mags.push_back(std::fabs(v));
  if (mags.size() < 64) return;
  const size_t in_band = size_t(std::count_if(mags.begin(), mags.end(), [](float m) { return m >= 0.25f && m < 4.0f; }));
  std::sort(mags.begin(), mags.end());
  const size_t distinct = size_t(std::unique(mags.begin(), mags.end()) - mags.begin());
  if (in_band * 100 >= mags.size() * 99 && distinct >= 16)
    fail("tensor '{}': its F16 values look like BF16 data labelled F16 ({} of {} sampled magnitudes lie in "
         "[0.25, 4), as bf16 bits read as f16 do); check the dtype in the safetensors header",
         t.name, in_band, mags.size());
}

}  // namespace

void check_values(const TensorView& t, const ValueCheck& c) {
  Reader r{static_cast<const uint8_t*>(t.data), t.dtype, dtype_size(t.dtype)};
  int64_t n = t.numel();
  switch (t.dtype) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::F8_E4M3: break;
    case DType::Q8_0: case DType::Q4_0:
      r.stride = dtype_block_bytes(t.dtype);
      n /= dtype_block_values(t.dtype);
      break;
    default: return;
  }
  if (n <= 0) return;
  const bool all = c.full || n <= kSampleValues;
  const int64_t count = all ? n : kSampleValues;
  const bool relabel = c.matrix && t.dtype == DType::F16;
  std::vector<float> samples;
  if (relabel) samples.reserve(size_t(std::min<int64_t>(count, kSampleValues)));
  for (int64_t k = 0; k < count; ++k) {
    // Evenly spread, first and last included; n·k < 2^63 since n is bounded by the file size.
    const int64_t i = all ? k : int64_t((uint64_t(n - 1) * uint64_t(k)) / uint64_t(count - 1));
    const uint32_t u = r.bits(i);
    if (!r.finite(u))
      fail("tensor '{}' holds a non-finite value ({} at {} {}): the checkpoint is damaged", t.name,
           r.value(u), r.stride == dtype_size(t.dtype) ? "element" : "the scale of block", i);
    if (relabel && (all ? k % std::max<int64_t>(1, count / kSampleValues) == 0 : true)) samples.push_back(r.value(u));
  }
  if (relabel) check_not_relabelled_bf16(t, samples);
}

}  // namespace fathom
