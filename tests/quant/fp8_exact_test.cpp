// FP8 weights used as FP8 (block-scaled e4m3 kernels) give the logits of the same weights
// dequantized exactly to F32 beforehand: the FP8 path adds no error of its own.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/config.h"
#include "io/safetensors.h"
#include "util.h"

namespace fathom {
namespace {

namespace fs = std::filesystem;

// Writes dir's checkpoint to out with every F8_E4M3 weight replaced by F32 values
// e4m3 × scale_inv (the block's scale), computed here independently of the kernels.
void write_dequantized_copy(const std::string& dir, const test::TempDir& out) {
  const ModelConfig cfg = ModelConfig::load(dir);
  const TensorStore store = TensorStore::open(dir + "/model.safetensors");
  std::vector<SafetensorsWriter::Entry> entries;
  for (const auto& [name, t] : store.all()) {
    if (name.size() > 10 && name.ends_with("_scale_inv") && store.find(name.substr(0, name.size() - 10))) continue;
    entries.push_back({name, t.dtype == DType::F8_E4M3 ? DType::F32 : t.dtype, t.shape});
  }
  SafetensorsWriter w((out / "model.safetensors").string(), entries);
  for (const auto& e : entries) {
    const TensorView& t = store.get(e.name);
    if (t.dtype != DType::F8_E4M3) {
      w.write(t.data, t.nbytes);
      continue;
    }
    ASSERT_EQ(t.shape.size(), 2u);
    const TensorView& s = store.get(e.name + "_scale_inv");
    const int64_t rows = t.shape[0], cols = t.shape[1], br = cfg.fp8_block_rows, bc = cfg.fp8_block_cols;
    const int64_t sc = (cols + bc - 1) / bc;
    const auto* q = static_cast<const uint8_t*>(t.data);
    const auto* scale = static_cast<const float*>(s.data);  // [ceil(rows/br), ceil(cols/bc)]
    std::vector<float> row(static_cast<size_t>(cols));  // [cols]
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c)
        row[size_t(c)] = fp8_e4m3_to_f32(q[r * cols + c]) * scale[(r / br) * sc + c / bc];
      w.write(row.data(), row.size() * 4);
    }
  }
  w.finish();
  nlohmann::json cj;
  std::ifstream(dir + "/config.json") >> cj;
  cj.erase("quantization_config");
  std::ofstream(out / "config.json") << cj.dump(2);
}

TEST(Fp8, KeptAsFp8EqualsExactDequantization) {
  const std::string dir = test::fixture("tiny-deepseek-v3-fp8");
  if (dir.empty()) GTEST_SKIP() << "no tiny-deepseek-v3-fp8 fixture";
  test::TempDir tmp("fp8");
  write_dequantized_copy(dir, tmp);
  ASSERT_FALSE(HasFatalFailure());

  auto fp8 = test::load(dir);
  auto f32 = test::load(tmp.str());
  // The copy really is F32 (the comparison would be vacuous otherwise).
  EXPECT_GT(f32->weight_bytes(), 3 * fp8->weight_bytes());
  const TensorStore golden = TensorStore::open(dir + "/golden.safetensors");
  int checked = 0;
  for (int n = 0; golden.find("input_ids." + std::to_string(n)); ++n, ++checked) {
    const auto ids = test::ids(golden.get("input_ids." + std::to_string(n)));
    for (AttnMode m : {AttnMode::Absorbed, AttnMode::Naive}) {
      const int64_t T = int64_t(ids.size()), V = fp8->config().vocab_size;
      std::vector<float> a(size_t(T * V)), b(size_t(T * V));
      KvCache ca = fp8->make_cache(1, T), cb = f32->make_cache(1, T);
      ForwardOpts fo;
      fo.attn = m;
      fp8->forward({SeqChunk{0, 0, ids.data(), T, true}}, ca, a.data(), fo);
      f32->forward({SeqChunk{0, 0, ids.data(), T, true}}, cb, b.data(), fo);
      EXPECT_LE(test::max_abs_diff(a.data(), b.data(), a.size()), 1e-4f) << "input_ids." << n;
    }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace fathom
