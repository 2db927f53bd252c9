// Golden tests against HF transformers outputs on every tiny fixture: logits, per-layer
// hidden states, greedy decoding, naive == absorbed MLA, incremental == full forward.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "fixtures.h"
#include "model/model.h"
#include "runtime/generate.h"

namespace fathom {
namespace {

using test::fixture_dirs;

class Golden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = GetParam();
    golden_ = std::make_unique<TensorStore>(TensorStore::open(dir_ + "/golden.safetensors"));
    LoadOpts lo;
    lo.threads = 2;
    model_ = load_model(dir_, lo);
  }
  std::vector<float> run(const std::vector<int32_t>& ids, AttnMode mode, const TraceFn* trace = nullptr) {
    const int64_t T = int64_t(ids.size()), V = model_->config().vocab_size;
    KvCache cache = model_->make_cache(1, T);
    std::vector<float> logits(size_t(T * V));
    ForwardOpts fo;
    fo.attn = mode;
    fo.trace = trace;
    model_->forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, logits.data(), fo);
    return logits;
  }
  std::string dir_;
  std::unique_ptr<TensorStore> golden_;
  std::unique_ptr<Model> model_;
};

TEST_P(Golden, LogitsMatchReference) {
  int checked = 0;
  for (int n = 0; golden_->find("input_ids." + std::to_string(n)); ++n) {
    const auto ids = test::ids(golden_->get("input_ids." + std::to_string(n)));
    const auto ref = test::f32(golden_->get("logits." + std::to_string(n)));
    const std::vector<AttnMode> modes = model_->config().is_deepseek()
                                            ? std::vector<AttnMode>{AttnMode::Absorbed, AttnMode::Naive}
                                            : std::vector<AttnMode>{AttnMode::Absorbed};
    for (AttnMode m : modes) {
      const auto got = run(ids, m);
      ASSERT_EQ(got.size(), ref.size());
      EXPECT_LE(test::max_abs_diff(got.data(), ref.data(), got.size()), 1e-3f)
          << "logits." << n << (m == AttnMode::Naive ? " (naive)" : " (absorbed)");
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST_P(Golden, HiddenStatesMatchReference) {
  const auto ids = test::ids(golden_->get("input_ids.0"));
  std::vector<std::vector<float>> states;
  TraceFn trace = [&](const std::string& name, const float* p, int64_t r, int64_t c) {
    if (name == "embed" || name.rfind("layer.", 0) == 0 || name == "final_norm")
      states.emplace_back(p, p + r * c);
  };
  run(ids, AttnMode::Absorbed, &trace);
  // HF's hidden states: the embeddings, each layer's output but the last, then the final norm.
  const int64_t L = model_->config().num_hidden_layers;
  ASSERT_EQ(int64_t(states.size()), L + 2);
  states.erase(states.end() - 2);  // the last layer's un-normed output has no reference
  for (int64_t l = 0; l <= L; ++l) {
    const auto ref = test::f32(golden_->get("hidden.0." + std::to_string(l)));
    ASSERT_EQ(ref.size(), states[size_t(l)].size());
    EXPECT_LE(test::max_abs_diff(ref.data(), states[size_t(l)].data(), ref.size()), 1e-3f) << "hidden.0." << l;
  }
}

TEST_P(Golden, GreedyMatchesReference) {
  const auto ids = test::ids(golden_->get("input_ids.0"));
  const auto want = test::ids(golden_->get("greedy.0"));
  GenerateOpts g;
  g.max_new_tokens = int64_t(want.size());
  g.sampling.temperature = 0;
  for (AttnMode m : {AttnMode::Absorbed, AttnMode::Naive}) {
    g.attn = m;
    EXPECT_EQ(generate(*model_, ids, g), want);
  }
}

TEST_P(Golden, IncrementalDecodeEqualsFullForward) {
  const auto ids = test::ids(golden_->get("input_ids.0"));
  const int64_t T = int64_t(ids.size()), V = model_->config().vocab_size;
  for (AttnMode m : {AttnMode::Absorbed, AttnMode::Naive}) {
    const auto full = run(ids, m);
    KvCache cache = model_->make_cache(1, T);
    std::vector<float> step(static_cast<size_t>(V));
    ForwardOpts fo;
    fo.attn = m;
    // A prefix chunk, then one token at a time.
    const int64_t pre = T / 3;
    model_->forward({SeqChunk{0, 0, ids.data(), pre, false}}, cache, step.data(), fo);
    EXPECT_LE(test::max_abs_diff(step.data(), full.data() + (pre - 1) * V, size_t(V)), 1e-4f);
    for (int64_t t = pre; t < T; ++t) {
      model_->forward({SeqChunk{0, t, ids.data() + t, 1, false}}, cache, step.data(), fo);
      ASSERT_LE(test::max_abs_diff(step.data(), full.data() + t * V, size_t(V)), 1e-4f) << "position " << t;
    }
  }
}

TEST_P(Golden, NaiveEqualsAbsorbed) {
  if (!model_->config().is_deepseek()) GTEST_SKIP() << "MLA only";
  const auto ids = test::ids(golden_->get("input_ids.0"));
  const auto a = run(ids, AttnMode::Absorbed), n = run(ids, AttnMode::Naive);
  EXPECT_LE(test::max_abs_diff(a.data(), n.data(), a.size()), 1e-4f);
}

TEST_P(Golden, BatchedSequencesAreIndependent) {
  // Two sequences in one batch give bit-identical logits to each run alone.
  const auto ids = test::ids(golden_->get("input_ids.0"));
  const int64_t T = int64_t(ids.size()), V = model_->config().vocab_size, h = T / 2;
  std::vector<int32_t> other(ids.rbegin(), ids.rend());
  KvCache alone = model_->make_cache(1, T), both = model_->make_cache(2, T);
  std::vector<float> la(static_cast<size_t>(V)), lb(size_t(2 * V));
  model_->forward({SeqChunk{0, 0, ids.data(), h, false}}, alone, la.data());
  model_->forward({SeqChunk{1, 0, other.data(), T, false}, SeqChunk{0, 0, ids.data(), h, false}}, both, lb.data());
  EXPECT_EQ(0, std::memcmp(la.data(), lb.data() + V, size_t(V) * 4));
  model_->forward({SeqChunk{0, h, ids.data() + h, 1, false}}, alone, la.data());
  model_->forward({SeqChunk{0, h, ids.data() + h, 1, false}}, both, lb.data());
  EXPECT_EQ(0, std::memcmp(la.data(), lb.data(), size_t(V) * 4));
}

TEST_P(Golden, DecodeIsThreadInvariant) {
  // A decode step splits its one row across the pool (attention: cache rows, heads, latent
  // columns; matmul: chunks taken at run time) in ways that depend on the thread count; the
  // logits must not. One thread takes the per-head path.
  const auto ids = test::ids(golden_->get("input_ids.0"));
  const int64_t T = int64_t(ids.size()), V = model_->config().vocab_size;
  auto decode = [&](Model& m) {
    KvCache cache = m.make_cache(1, T);
    std::vector<float> all, step(static_cast<size_t>(V));
    m.forward({SeqChunk{0, 0, ids.data(), T / 2, false}}, cache, step.data());
    for (int64_t t = T / 2; t < T; ++t) {
      m.forward({SeqChunk{0, t, ids.data() + t, 1, false}}, cache, step.data());
      all.insert(all.end(), step.begin(), step.end());
    }
    return all;
  };
  const auto two = decode(*model_);
  for (int threads : {1, 3}) {
    LoadOpts lo;
    lo.threads = threads;
    const auto other = load_model(dir_, lo);
    const auto got = decode(*other);
    ASSERT_EQ(got.size(), two.size());
    EXPECT_EQ(0, std::memcmp(got.data(), two.data(), got.size() * 4)) << "threads=" << threads;
  }
}

std::string fixture_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = std::filesystem::path(info.param).filename().string();
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Golden, ::testing::ValuesIn(fixture_dirs()), fixture_name);

}  // namespace
}  // namespace fathom
