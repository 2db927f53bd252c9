// GGUF models end to end, against independent references: the BF16 files (which hold the
// HF fixtures' bf16 weights exactly) must give the HF transformers logits within 1e-3; the
// quantized files must agree with llama.cpp's own logits on the same file (KL <= 0.01 as a mean
// that drops the worst 5% of positions, where a routing near-tie may flip).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "fixtures.h"
#include "io/gguf.h"
#include "model/model.h"

namespace fathom {
namespace {

const std::string kGguf = std::string(FATHOM_TEST_DATA) + "/gguf/";

std::vector<float> forward(Model& m, const std::vector<int32_t>& ids, AttnMode mode) {
  const int64_t T = int64_t(ids.size()), V = m.config().vocab_size;
  KvCache cache = m.make_cache(1, T);
  std::vector<float> logits(size_t(T * V));
  ForwardOpts fo;
  fo.attn = mode;
  m.forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, logits.data(), fo);
  return logits;
}

std::unique_ptr<Model> load(const std::string& file) {
  LoadOpts lo;
  lo.threads = 2;
  return load_model(kGguf + file, lo);
}

struct Bf16Case {
  const char* file;
  const char* fixture;  // tests/data/fixtures/<fixture>/golden.safetensors
};

void PrintTo(const Bf16Case& c, std::ostream* os) { *os << c.file; }

class GgufBf16 : public ::testing::TestWithParam<Bf16Case> {};

TEST_P(GgufBf16, LogitsMatchHfReference) {
  const auto [file, fixture] = GetParam();
  auto model = load(file);
  const TensorStore golden = TensorStore::open(std::string(FATHOM_TEST_DATA) + "/fixtures/" + fixture + "/golden.safetensors");
  int checked = 0;
  for (int n = 0; golden.find("input_ids." + std::to_string(n)); ++n, ++checked) {
    const auto ids = test::ids(golden.get("input_ids." + std::to_string(n)));
    const auto ref = test::f32(golden.get("logits." + std::to_string(n)));
    const std::vector<AttnMode> modes = model->config().is_deepseek()
                                            ? std::vector<AttnMode>{AttnMode::Absorbed, AttnMode::Naive}
                                            : std::vector<AttnMode>{AttnMode::Absorbed};
    for (AttnMode m : modes) {
      const auto got = forward(*model, ids, m);
      ASSERT_EQ(got.size(), ref.size());
      EXPECT_LE(test::max_abs_diff(got.data(), ref.data(), got.size()), 1e-3f) << file << " logits." << n;
    }
  }
  EXPECT_GT(checked, 0);
}

INSTANTIATE_TEST_SUITE_P(Tiny, GgufBf16,
                         ::testing::Values(Bf16Case{"tiny-deepseek-v3.BF16.gguf", "tiny-deepseek-v3"},
                                           Bf16Case{"tiny-deepseek-v2-lite.BF16.gguf", "tiny-deepseek-v2-lite"},
                                           Bf16Case{"tiny-deepseek-v2-lite.legacy-kv_b.BF16.gguf", "tiny-deepseek-v2-lite"},
                                           Bf16Case{"tiny-qwen2.BF16.gguf", "tiny-qwen2"},
                                           Bf16Case{"tiny-llama3.BF16.gguf", "tiny-llama3"}));

// A file stem: NAME.gguf with llama.cpp's logits in NAME.golden.safetensors.
class GgufQuant : public ::testing::TestWithParam<const char*> {};

TEST_P(GgufQuant, KlAgainstLlamaCppLogits) {
  const std::string name = GetParam();
  auto model = load(name + ".gguf");
  const TensorStore golden = TensorStore::open(kGguf + name + ".golden.safetensors");
  const int64_t V = model->config().vocab_size;
  std::vector<double> kls;
  for (int n = 0; golden.find("input_ids." + std::to_string(n)); ++n) {
    const auto ids = test::ids(golden.get("input_ids." + std::to_string(n)));
    const auto ref = test::f32(golden.get("llama_cpp_logits." + std::to_string(n)));
    const auto got = forward(*model, ids, AttnMode::Absorbed);
    ASSERT_EQ(got.size(), ref.size());
    for (size_t t = 0; t < ids.size(); ++t) kls.push_back(test::kl(ref.data() + t * V, got.data() + t * V, V));
  }
  ASSERT_FALSE(kls.empty());
  const double mean = test::trimmed_mean(kls);
  EXPECT_LE(mean, 0.01) << name;
}

// The small model's Q4_K_M mixes Q4_K, Q5_0 (attn_k_b) and Q6_K, run as stored.
INSTANTIATE_TEST_SUITE_P(Files, GgufQuant,
                         ::testing::Values("tiny-deepseek-v3.Q8_0", "tiny-deepseek-v2-lite.Q8_0", "tiny-qwen2.Q8_0",
                                           "tiny-llama3.Q8_0", "small-deepseek-v3.Q4_K_M"));

TEST(GgufModel, ConfigFromMetadata) {
  auto m = load("tiny-deepseek-v3.BF16.gguf");
  const ModelConfig& c = m->config();
  EXPECT_EQ(c.arch, Arch::DeepseekV3);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.q_lora_rank, 48);
  EXPECT_EQ(c.kv_lora_rank, 32);
  EXPECT_EQ(c.qk_nope_head_dim + c.qk_rope_head_dim, 48);
  EXPECT_EQ(c.v_head_dim, 32);
  EXPECT_EQ(c.topk_method, TopkMethod::NoauxTc);
  EXPECT_EQ(c.scoring_func, ScoringFunc::Sigmoid);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.rope_scaling.type, RopeScaling::Type::Yarn);
}

}  // namespace
}  // namespace fathom
