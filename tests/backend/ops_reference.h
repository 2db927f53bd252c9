#pragma once
// Shared pieces of the op-level backend suite: the backends under test, buffers in backend
// memory, host-side weight encodings with an independent decoder, and comparisons that say
// how two results differ.
//
// Every test is parameterized over backend_factories() and talks to the backend only through
// `Backend&` (buffers via alloc/write/read, weights via prepare_*); the references are plain
// double (or, where the op's result is defined by a fixed float order, float) loops written
// here, never calls into the CPU kernels. A second backend (CUDA) is tested by adding its
// factory to the list: it is then held to the same references, tolerances and invariances.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/quantize.h"
#include "core/dtype.h"

namespace fathom::opstest {

// ---- the backends under test

struct BackendFactory {
  std::string name;
  std::function<std::unique_ptr<Backend>(int threads)> make;
};

inline std::vector<BackendFactory> backend_factories() {
  return {{"cpu", [](int threads) { return make_backend(BackendOpts{threads}); }}};
}

inline void PrintTo(const BackendFactory& f, std::ostream* os) { *os << f.name; }

inline std::string factory_name(const ::testing::TestParamInfo<BackendFactory>& i) { return i.param.name; }

// Fixture base: a fresh backend per call, with an arena for prepared weights.
class BackendTest : public ::testing::TestWithParam<BackendFactory> {
 protected:
  std::unique_ptr<Backend> make(int threads, size_t arena = size_t(16) << 20) {
    auto be = GetParam().make(threads);
    if (arena) be->reserve_arena(arena);
    return be;
  }
};

// Unit roundoff of fp32 (round to nearest): every fp32 operation is exact to within u·|result|.
inline constexpr double kU = 1.0 / (1 << 24);

// ---- host data

inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& f : v) f = d(rng);
  return v;
}

// ---- backend memory

class DevBuf {
 public:
  DevBuf(Backend& be, size_t n) : be_(&be), n_(n), p_(be.alloc_floats(n)) {}
  DevBuf(Backend& be, const std::vector<float>& host) : DevBuf(be, host.size()) { set(host); }
  ~DevBuf() { be_->free_floats(p_); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  float* p() const { return p_; }
  size_t size() const { return n_; }
  void set(const std::vector<float>& host) { be_->write(p_, host.data(), std::min(n_, host.size())); }
  std::vector<float> get() const {
    std::vector<float> h(n_);
    be_->read(h.data(), p_, n_);
    return h;
  }

 private:
  Backend* be_;
  size_t n_;
  float* p_;
};

// ---- weights as stored, with a decoder of their own

// A matrix encoded in one storage format; owns its bytes (a prepared weight may use them in
// place, so it must outlive the weight).
struct HostMatrix {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0, block = 128;
  std::vector<uint8_t> bytes;
  std::vector<float> scale;  // F8_E4M3 block scales

  StoredMatrix stored() const {
    StoredMatrix m;
    m.dtype = dtype;
    m.rows = rows;
    m.cols = cols;
    m.data = bytes.data();
    m.block_scale = scale.empty() ? nullptr : scale.data();
    m.block = block;
    return m;
  }
};

inline HostMatrix encode(DType t, const std::vector<float>& src, int64_t rows, int64_t cols, int64_t block = 128) {
  HostMatrix m{t, rows, cols, block, {}, {}};
  m.bytes.resize(dtype_bytes(t, cols) * size_t(rows));
  switch (t) {
    case DType::F32: std::memcpy(m.bytes.data(), src.data(), src.size() * 4); break;
    case DType::BF16:
    case DType::F16:
      for (size_t i = 0; i < src.size(); ++i) {
        const uint16_t h = t == DType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        std::memcpy(m.bytes.data() + 2 * i, &h, 2);
      }
      break;
    case DType::F8_E4M3:
      m.scale.resize(size_t((rows + block - 1) / block * ((cols + block - 1) / block)));
      cpu::quantize_fp8_blocks(src.data(), rows, cols, m.bytes.data(), m.scale.data(), block);
      break;
    default:
      for (int64_t r = 0; r < rows; ++r)
        cpu::quantize_row(t, src.data() + r * cols, cols, m.bytes.data() + size_t(r) * dtype_bytes(t, cols));
  }
  return m;
}

// The values a stored matrix holds, from the format definitions (core/dtype.h), [rows·cols].
// Each value is one fp32 rounding at most (fp8 · scale), so a backend must match bit for bit.
inline std::vector<float> decode(const HostMatrix& m) {
  std::vector<float> out(size_t(m.rows * m.cols));
  const size_t rb = dtype_bytes(m.dtype, m.cols);
  for (int64_t r = 0; r < m.rows; ++r) {
    const uint8_t* p = m.bytes.data() + size_t(r) * rb;
    float* o = out.data() + r * m.cols;
    auto u16 = [&](size_t off) {
      uint16_t h;
      std::memcpy(&h, p + off, 2);
      return h;
    };
    for (int64_t k = 0; k < m.cols; ++k) {
      const int64_t b = k / 32, i = k % 32;
      switch (m.dtype) {
        case DType::F32: std::memcpy(&o[k], p + 4 * k, 4); break;
        case DType::BF16: o[k] = bf16_to_f32(u16(size_t(2 * k))); break;
        case DType::F16: o[k] = f16_to_f32(u16(size_t(2 * k))); break;
        case DType::F8_E4M3: {
          const int64_t sc = (m.cols + m.block - 1) / m.block;
          o[k] = fp8_e4m3_to_f32(p[k]) * m.scale[size_t((r / m.block) * sc + k / m.block)];
          break;
        }
        case DType::Q8_0: o[k] = f16_to_f32(u16(size_t(34 * b))) * float(int8_t(p[34 * b + 2 + i])); break;
        case DType::Q4_0: {
          const uint8_t q = p[18 * b + 2 + i % 16];
          o[k] = f16_to_f32(u16(size_t(18 * b))) * float(int(i < 16 ? q & 15 : q >> 4) - 8);
          break;
        }
        default: ADD_FAILURE() << "decode: dtype " << dtype_name(m.dtype);
      }
    }
  }
  return out;
}

inline bool is_block_quant(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }

// Every row of a prepared weight, through the backend.
inline std::vector<float> dequantized(const Backend& be, const Weight& w) {
  std::vector<float> out(size_t(w.rows() * w.cols()));
  for (int64_t r = 0; r < w.rows(); ++r) be.dequantize_row(w, r, out.data() + r * w.cols());
  return out;
}

// ---- comparisons that say how results differ

inline std::string where(size_t i, int64_t cols) {
  std::ostringstream s;
  s << "[" << i << "]";
  if (cols > 0) s << " (row " << i / size_t(cols) << ", col " << i % size_t(cols) << ")";
  return s.str();
}

inline std::string nonfinite(const std::vector<float>& v, int64_t cols, const char* label) {
  std::ostringstream s;
  int n = 0;
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) {
      if (n < 8) s << (n ? ", " : "") << (std::isnan(v[i]) ? "NaN" : "inf") << " at " << where(i, cols);
      ++n;
    }
  if (!n) return "";
  return std::string("\n  ") + label + ": " + std::to_string(n) + " non-finite: " + s.str() + (n > 8 ? ", ..." : "");
}

// |got[i] - want[i]| ≤ tol[i] everywhere (NaN matches NaN, inf matches the same inf).
inline ::testing::AssertionResult within(const std::vector<float>& got, const std::vector<double>& want,
                                         const std::vector<double>& tol, int64_t cols = 0) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  size_t bad = 0, worst = 0, first = got.size(), max_abs_i = 0, max_rel_i = 0;
  double worst_ratio = 0, max_abs = 0, max_rel = 0;
  std::vector<float> wantf(want.begin(), want.end());
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    bool ok;
    double err;
    if (std::isnan(g) || std::isnan(w) || std::isinf(g) || std::isinf(w)) {
      ok = (std::isnan(g) && std::isnan(w)) || g == w;
      err = ok ? 0 : INFINITY;
    } else {
      err = std::fabs(g - w);
      ok = err <= tol[i];
    }
    const double rel = err / std::max(std::fabs(w), 1e-30);
    if (err > max_abs) max_abs = err, max_abs_i = i;
    if (rel > max_rel) max_rel = rel, max_rel_i = i;
    if (!ok) {
      ++bad;
      if (first == got.size()) first = i;
      const double ratio = tol[i] > 0 ? err / tol[i] : INFINITY;
      if (ratio >= worst_ratio) worst_ratio = ratio, worst = i;
    }
  }
  if (!bad) return ::testing::AssertionSuccess();
  std::ostringstream r;
  r.precision(9);
  r << bad << " of " << got.size() << " values out of tolerance; first at " << where(first, cols)
    << "\n  worst (err/tol " << worst_ratio << ") at " << where(worst, cols) << ": got " << got[worst] << ", want "
    << want[worst] << ", tol " << tol[worst] << "\n  max abs err " << max_abs << " at " << where(max_abs_i, cols)
    << "; max rel err " << max_rel << " at " << where(max_rel_i, cols) << nonfinite(got, cols, "got")
    << nonfinite(wantf, cols, "want");
  return ::testing::AssertionFailure() << r.str();
}

// Same with one bound for all: |got - want| ≤ abs + rel·|want|.
inline ::testing::AssertionResult within(const std::vector<float>& got, const std::vector<double>& want, double abs,
                                         double rel, int64_t cols = 0) {
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < want.size(); ++i) tol[i] = abs + rel * std::fabs(want[i]);
  return within(got, want, tol, cols);
}

// Bit-identical (NaNs with the same payload, -0 ≠ +0).
inline ::testing::AssertionResult bit_equal(const std::vector<float>& got, const std::vector<float>& want,
                                            int64_t cols = 0) {
  if (got.size() != want.size()) return ::testing::AssertionFailure() << "sizes " << got.size() << " vs " << want.size();
  size_t bad = 0, first = 0, max_i = 0;
  double max_abs = -1;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], 4) != 0) {
      if (!bad++) first = i;
      const double e = std::fabs(double(got[i]) - double(want[i]));
      if (!(e <= max_abs)) max_abs = e, max_i = i;
    }
  if (!bad) return ::testing::AssertionSuccess();
  std::ostringstream r;
  r.precision(9);
  r << bad << " of " << got.size() << " values differ in bits; first at " << where(first, cols)
    << ": got " << got[first] << ", want " << want[first] << "\n  max abs diff " << max_abs << " at "
    << where(max_i, cols) << ": got " << got[max_i] << ", want " << want[max_i] << nonfinite(got, cols, "got")
    << nonfinite(want, cols, "want");
  return ::testing::AssertionFailure() << r.str();
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

}  // namespace fathom::opstest
