// `fathom quantize` output loads without requantizing and gives, bit for bit, the logits of
// the source loaded with --quant; sharding and the FP8 source path included.
#include <gtest/gtest.h>

#include <cstring>

#include "io/safetensors.h"
#include "checkpoint/quantize_checkpoint.h"
#include "model/transformer.h"
#include "util.h"

namespace fathom {
namespace {

namespace fs = std::filesystem;

void expect_same_logits(const std::string& src, const std::string& quantized, const std::string& quant) {
  auto a = test::load(src, quant);
  auto b = test::load(quantized);
  // The loader still counts the FP8 scales of weights it requantized at load, so only the
  // quantized checkpoint can be smaller.
  EXPECT_LE(b->weight_bytes(), a->weight_bytes());
  EXPECT_EQ(a->active_bytes_per_token(), b->active_bytes_per_token());
  const TensorStore golden = TensorStore::open(src + "/golden.safetensors");
  const auto ids = test::ids(golden.get("input_ids.0"));
  const auto la = test::all_logits(*a, ids), lb = test::all_logits(*b, ids);
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), la.size() * 4)) << quant << ": logits differ";
}

// Every Linear weight whose rows split into 32-value blocks is stored in the block format;
// the others keep their stored format.
void expect_stored_as(const std::string& dir, DType fmt) {
  const ModelConfig cfg = ModelConfig::load(dir);
  const TensorStore store = TensorStore::open(dir);
  int linear = 0;
  for (const WeightSpec& s : weight_table(cfg)) {
    if (s.kind != WeightKind::Linear || !store.find(s.name)) continue;
    if (s.shape[1] % 32) {
      EXPECT_NE(store.get(s.name).dtype, fmt) << s.name;
      continue;
    }
    EXPECT_EQ(store.get(s.name).dtype, fmt) << s.name;
    ++linear;
  }
  EXPECT_GT(linear, 0);
  for (const auto& [name, t] : store.all()) EXPECT_FALSE(name.ends_with("_scale_inv")) << name;
}

class Roundtrip : public ::testing::TestWithParam<std::string> {};

TEST_P(Roundtrip, QuantizedCheckpointEqualsQuantAtLoad) {
  for (const char* q : {"q8_0", "q4_0"}) {
    test::TempDir out("rt");
    QuantizeCheckpointOpts o;
    o.model_dir = GetParam();
    o.out_dir = out.str();
    o.quant = q;
    o.threads = 2;
    const QuantizeCheckpointResult r = quantize_checkpoint(o);
    EXPECT_EQ(r.shards, 1);
    EXPECT_GT(r.quantized, 0);
    EXPECT_LT(r.bytes_out, r.bytes_in);
    EXPECT_TRUE(fs::exists(out / "model.safetensors"));
    expect_stored_as(out.str(), std::string(q) == "q8_0" ? DType::Q8_0 : DType::Q4_0);
    expect_same_logits(GetParam(), out.str(), q);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Roundtrip, ::testing::ValuesIn(test::fixture_dirs()),
                         [](const auto& info) { return test::fixture_test_name(info.param); });

TEST(QuantizeCheckpoint, ShardsWithIndex) {
  const std::string src = test::fixture("tiny-deepseek-v3-fp8");
  if (src.empty()) GTEST_SKIP() << "no tiny-deepseek-v3-fp8 fixture";
  test::TempDir out("shard");
  QuantizeCheckpointOpts o;
  o.model_dir = src;
  o.out_dir = out.str();
  o.quant = "q8_0";
  o.shard_bytes = 64 << 10;
  const QuantizeCheckpointResult r = quantize_checkpoint(o);
  EXPECT_GT(r.shards, 2);
  EXPECT_TRUE(fs::exists(out / "model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(out / fmt::format("model-00001-of-{:05d}.safetensors", r.shards)));
  expect_same_logits(src, out.str(), "q8_0");
}

TEST(QuantizeCheckpoint, RefusesADirectoryHoldingACheckpoint) {
  const std::string src = test::fixture("tiny-qwen2");
  if (src.empty()) GTEST_SKIP() << "no tiny-qwen2 fixture";
  test::TempDir out("busy");
  QuantizeCheckpointOpts o;
  o.model_dir = src;
  o.out_dir = out.str();
  o.quant = "q4_0";
  quantize_checkpoint(o);
  EXPECT_THROW(quantize_checkpoint(o), Error);
  o.quant = "q5_k";
  test::TempDir other("badq");
  o.out_dir = other.str();
  EXPECT_THROW(quantize_checkpoint(o), Error);
}

TEST(QuantizeCli, WritesACheckpointThatLoads) {
  const std::string src = test::fixture("tiny-llama3");
  if (src.empty()) GTEST_SKIP() << "no tiny-llama3 fixture";
  test::TempDir out("cli");
  const auto r = test::run_cmd(std::string(FATHOM_BINARY) + " quantize --model " + src + " --quant q4_0 --out " +
                               out.str() + " --threads 2 2>&1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("requantized to q4_0"), std::string::npos) << r.out;
  expect_same_logits(src, out.str(), "q4_0");
}

}  // namespace
}  // namespace fathom
