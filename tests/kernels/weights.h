#pragma once
// Test helpers: random weights encoded in each storage format, and reference math in double.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/quantize.h"

namespace fathom::cpu::testing {

// A weight matrix in one format, owning its bytes.
struct TestWeight {
  DType dtype;
  int64_t rows, cols;
  std::vector<uint8_t> data;
  std::vector<float> scale;  // F8 block scales

  WeightView view() const {
    WeightView v;
    v.dtype = dtype;
    v.rows = rows;
    v.cols = cols;
    v.data = data.data();
    v.block_scale = scale.empty() ? nullptr : scale.data();
    v.block = 128;
    return v;
  }
};

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& f : v) f = dist(rng);
  return v;
}

inline TestWeight encode(DType t, const std::vector<float>& src, int64_t rows, int64_t cols) {
  TestWeight w{t, rows, cols, {}, {}};
  w.data.resize(dtype_bytes(t, cols) * size_t(rows));
  switch (t) {
    case DType::F32:
      std::memcpy(w.data.data(), src.data(), src.size() * 4);
      break;
    case DType::BF16: case DType::F16:
      for (size_t i = 0; i < src.size(); ++i) {
        uint16_t h = t == DType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        std::memcpy(w.data.data() + 2 * i, &h, 2);
      }
      break;
    case DType::F8_E4M3:
      w.scale.resize(size_t((rows + 127) / 128 * ((cols + 127) / 128)));
      quantize_fp8_blocks(src.data(), rows, cols, w.data.data(), w.scale.data());
      break;
    default:
      for (int64_t r = 0; r < rows; ++r)
        quantize_row(t, src.data() + r * cols, cols, w.data.data() + size_t(r) * dtype_bytes(t, cols));
  }
  return w;
}

inline std::vector<float> dequantize(const TestWeight& w) {
  std::vector<float> out(size_t(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) dequantize_row(w.view(), r, out.data() + r * w.cols);
  return out;
}

// y = x·Wᵀ in double on the decoded weights, and Σ|x_k·w_k| per output (the scale of any
// summation's rounding error), both [m, rows].
struct RefDot {
  std::vector<double> exact, mag;
};
inline RefDot reference_dot(const TestWeight& w, const std::vector<float>& x, int64_t m) {
  const auto wd = dequantize(w);
  RefDot r{std::vector<double>(size_t(m * w.rows)), std::vector<double>(size_t(m * w.rows))};
  for (int64_t i = 0; i < m; ++i)
    for (int64_t n = 0; n < w.rows; ++n) {
      double s = 0, a = 0;
      for (int64_t k = 0; k < w.cols; ++k) {
        const double v = double(x[size_t(i * w.cols + k)]) * wd[size_t(n * w.cols + k)];
        s += v, a += std::fabs(v);
      }
      r.exact[size_t(i * w.rows + n)] = s;
      r.mag[size_t(i * w.rows + n)] = a;
    }
  return r;
}

inline bool is_quant(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }

}  // namespace fathom::cpu::testing
