#pragma once
// Finds the golden fixtures: tests/data/fixtures/tiny-* and, when present beside the repo,
// shared/fixtures/tiny-* (so new reference checkpoints are picked up without a copy).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace fathom::test {

inline std::vector<std::string> fixture_dirs() {
  namespace fs = std::filesystem;
  std::map<std::string, std::string> by_name;
  const fs::path roots[] = {fs::path(FATHOM_SOURCE_DIR) / ".." / "shared" / "fixtures",
                            fs::path(FATHOM_TEST_DATA) / "fixtures"};
  for (const auto& root : roots) {
    if (!fs::is_directory(root)) continue;
    for (auto& e : fs::directory_iterator(root)) {
      const std::string name = e.path().filename().string();
      if (e.is_directory() && name.rfind("tiny-", 0) == 0 && fs::exists(e.path() / "golden.safetensors"))
        by_name[name] = e.path().string();
    }
  }
  std::vector<std::string> out;
  for (auto& [n, p] : by_name) out.push_back(p);
  return out;
}

inline std::vector<float> f32(const TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

inline std::vector<int32_t> ids(const TensorView& t) {
  std::vector<int32_t> v(size_t(t.numel()));
  const auto* p = static_cast<const uint8_t*>(t.data);
  for (size_t i = 0; i < v.size(); ++i) {
    int64_t x;
    std::memcpy(&x, p + 8 * i, 8);
    v[i] = int32_t(x);
  }
  return v;
}

inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// KL(p || q) over one row of V logits, natural log, in double.
inline double kl(const float* p, const float* q, int64_t V) {
  auto log_softmax = [&](const float* x) {
    double mx = x[0], s = 0;
    for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(x[i]));
    for (int64_t i = 0; i < V; ++i) s += std::exp(double(x[i]) - mx);
    std::vector<double> out(static_cast<size_t>(V));
    for (int64_t i = 0; i < V; ++i) out[size_t(i)] = double(x[i]) - mx - std::log(s);
    return out;
  };
  const auto lp = log_softmax(p), lq = log_softmax(q);
  double k = 0;
  for (int64_t i = 0; i < V; ++i) k += std::exp(lp[size_t(i)]) * (lp[size_t(i)] - lq[size_t(i)]);
  return k;
}

// The mean that drops the largest round(5%) of the values, at least one: a routing near-tie can
// flip one position under a different activation rounding, and that one position should not
// decide a file's verdict.
inline double trimmed_mean(std::vector<double> v) {
  if (v.size() < 2) return v.empty() ? 0.0 : v[0];
  std::sort(v.begin(), v.end());
  const size_t drop = std::max<size_t>(1, size_t(std::lround(0.05 * double(v.size()))));
  double sum = 0;
  for (size_t i = 0; i + drop < v.size(); ++i) sum += v[i];
  return sum / double(v.size() - drop);
}

}  // namespace fathom::test
