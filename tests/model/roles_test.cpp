// The role tables against real checkpoints: every tensor a fixture holds is named by exactly one
// row, MTP layers load when present, an expert placement leaves the other experts unloaded,
// and ForwardOpts::final_hidden returns the hidden states after the final norm.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <set>

#include "fixtures.h"
#include "model/model.h"
#include "model/roles.h"
#include "model/transformer.h"

namespace fathom {
namespace {

using test::fixture_dirs;

std::string fixture(const std::string& name) {
  for (const auto& d : fixture_dirs())
    if (std::filesystem::path(d).filename() == name) return d;
  return "";
}

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = std::filesystem::path(info.param).filename().string();
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

class Roles : public ::testing::TestWithParam<std::string> {};

TEST_P(Roles, EveryCheckpointTensorHasExactlyOneRow) {
  const ModelConfig cfg = ModelConfig::load(GetParam());
  const TensorStore store = TensorStore::open(GetParam());
  std::set<std::string> named;
  for (const WeightSpec& s : weight_table(cfg)) {
    EXPECT_TRUE(named.insert(s.name).second) << "two rows name " << s.name;
    const TensorView* t = store.find(s.name);
    if (!s.optional) {
      EXPECT_TRUE(t) << "missing " << s.name << " (" << role_name(s.role) << ")";
    }
    if (t) {
      EXPECT_EQ(t->shape, s.shape) << s.name;
    }
  }
  // The directory also holds the goldens, which are no weights.
  const TensorStore golden = TensorStore::open(GetParam() + "/golden.safetensors");
  for (const auto& [name, t] : store.all()) {
    if (name.ends_with("_scale_inv") || golden.find(name)) continue;  // FP8 scales travel with their weight
    EXPECT_TRUE(named.count(name)) << "no row names " << name;
  }
}

TEST_P(Roles, EveryRowHasAGgufName) {
  const ModelConfig cfg = ModelConfig::load(GetParam());
  for (const RoleRow& r : role_table(cfg))
    if (r.when) {
      EXPECT_FALSE(r.gguf.empty()) << role_name(r.role);
    }
  // Routed experts are one stacked GGUF tensor per layer; everything else has its own name.
  std::set<std::string> names;
  for (const WeightSpec& s : expand(role_table(cfg), cfg, NameFormat::Gguf))
    if (s.expert <= 0) {
      EXPECT_TRUE(names.insert(s.name).second) << "two rows name " << s.name;
    }
}

TEST_P(Roles, FinalHiddenIsTheFinalNormOutput) {
  const TensorStore golden = TensorStore::open(GetParam() + "/golden.safetensors");
  const auto ids = test::ids(golden.get("input_ids.0"));
  LoadOpts lo;
  lo.threads = 2;
  auto m = load_model(GetParam(), lo);
  const int64_t T = int64_t(ids.size()), D = m->config().hidden_size, V = m->config().vocab_size;
  const int64_t L = m->config().num_hidden_layers;
  std::vector<float> traced, hidden(size_t(T * D), NAN), logits(size_t(T * V));
  TraceFn trace = [&](const std::string& name, const float* p, int64_t r, int64_t c) {
    if (name == "final_norm") traced.assign(p, p + r * c);
  };
  ForwardOpts fo;
  fo.trace = &trace;
  fo.final_hidden = hidden.data();
  KvCache cache = m->make_cache(1, T);
  m->forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, logits.data(), fo);
  ASSERT_EQ(traced.size(), hidden.size());
  EXPECT_EQ(0, std::memcmp(traced.data(), hidden.data(), hidden.size() * 4));
  const auto ref = test::f32(golden.get("hidden.0." + std::to_string(L)));
  ASSERT_EQ(ref.size(), hidden.size());
  EXPECT_LE(test::max_abs_diff(ref.data(), hidden.data(), ref.size()), 1e-3f);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, Roles, ::testing::ValuesIn(fixture_dirs()), param_name);

TEST(Mtp, LoadedWhenTheCheckpointHasIt) {
  const std::string with = fixture("tiny-deepseek-v3-mtp"), without = fixture("tiny-deepseek-v3");
  if (with.empty()) GTEST_SKIP() << "needs shared/fixtures/tiny-deepseek-v3-mtp";
  LoadOpts lo;
  lo.threads = 1;
  auto a = load_model(with, lo), b = load_model(without, lo);
  const auto& ma = dynamic_cast<const Transformer&>(*a).mtp();
  ASSERT_EQ(ma.size(), 1u);
  EXPECT_EQ(ma[0].layer.cache_layer, 0);  // module k is layer k of its own cache (make_mtp_cache)
  EXPECT_EQ(a->mtp_modules(), 1);
  EXPECT_EQ(b->mtp_modules(), 0);
  EXPECT_EQ(ma[0].eh_proj->cols(), 2 * a->config().hidden_size);
  EXPECT_NE(ma[0].embed, nullptr);
  EXPECT_NE(ma[0].head, nullptr);
  EXPECT_TRUE(dynamic_cast<const Transformer&>(*b).mtp().empty());
  // The MTP layer's weights are held, but a decoded token does not read them.
  EXPECT_GT(a->weight_bytes(), b->weight_bytes());
  EXPECT_EQ(a->active_bytes_per_token(), b->active_bytes_per_token());
}

TEST(ExpertPlacement, ExpertsNotHeldAreNotLoaded) {
  const std::string dir = fixture("tiny-deepseek-v3");
  ASSERT_FALSE(dir.empty());
  const ModelConfig cfg = ModelConfig::load(dir);
  const TensorStore store = TensorStore::open(dir);
  LoadOpts all;
  all.threads = 2;
  all.repack = false;  // bytes as stored
  LoadOpts held = all, half = all;
  held.experts = ExpertPlacement::all(cfg.n_routed_experts);
  half.experts = ExpertPlacement::all(cfg.n_routed_experts);
  size_t dropped = 0;
  for (int64_t e = 1; e < cfg.n_routed_experts; e += 2) half.experts.held[size_t(e)] = false;
  for (const WeightSpec& s : weight_table(cfg))
    if (s.expert >= 0 && !half.experts.holds(s.expert)) dropped += store.get(s.name).nbytes;
  ASSERT_GT(dropped, 0u);
  auto ma = load_model(dir, all), mh = load_model(dir, held), mp = load_model(dir, half);
  EXPECT_EQ(ma->weight_bytes(), mh->weight_bytes());
  EXPECT_EQ(ma->weight_bytes() - mp->weight_bytes(), dropped);
  // Holding every expert explicitly is the default, bit for bit; holding half still runs
  // (the other experts' share is what a peer process would add).
  const TensorStore golden = TensorStore::open(dir + "/golden.safetensors");
  const auto ids = test::ids(golden.get("input_ids.0"));
  const int64_t T = int64_t(ids.size()), V = cfg.vocab_size;
  auto run = [&](Model& m) {
    std::vector<float> l(size_t(T * V));
    KvCache c = m.make_cache(1, T);
    m.forward({SeqChunk{0, 0, ids.data(), T, true}}, c, l.data());
    return l;
  };
  const auto la = run(*ma), lh = run(*mh), lp = run(*mp);
  EXPECT_EQ(0, std::memcmp(la.data(), lh.data(), la.size() * 4));
  EXPECT_NE(0, std::memcmp(la.data(), lp.data(), la.size() * 4));
}

}  // namespace
}  // namespace fathom
