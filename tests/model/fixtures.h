#pragma once
// Finds the golden fixtures: tests/data/fixtures/tiny-* and, when present beside the repo,
// shared/fixtures/tiny-* (so new reference checkpoints are picked up without a copy).
#include <algorithm>
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

}  // namespace fathom::test
