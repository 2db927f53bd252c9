// Sampler semantics: greedy, penalties as OpenAI defines them (subtract presence once and
// frequency per occurrence of generated tokens), top-k/top-p cuts, seeded reproducibility.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/sampler.h"

namespace fathom {
namespace {

TEST(Sampler, GreedyPicksTheLargestLogitLowestIndexOnTies) {
  SamplingParams p;
  p.temperature = 0;
  Sampler s(p, 4);
  std::vector<float> l = {0.5f, 2.f, 2.f, -1.f};
  EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(Sampler, ArgmaxMatchesAPlainScan) {
  // The first index of the largest value, against a one-at-a-time scan, on lengths around
  // the 8-wide chains, with ties, NaNs and infinities placed anywhere.
  auto scan = [](const std::vector<float>& v) {
    size_t best = 0;
    for (size_t i = 1; i < v.size(); ++i)
      if (v[i] > v[best]) best = i;
    return int32_t(best);
  };
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> small(-3, 3);
  for (size_t n : {1, 2, 7, 8, 9, 15, 16, 17, 63, 129, 102400}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> v(n);
      for (auto& x : v) x = float(small(rng));  // many ties
      if (trial % 4 == 1) v[rng() % n] = NAN;
      if (trial % 4 == 2) v[0] = NAN;
      if (trial % 4 == 3) v[rng() % n] = INFINITY;
      ASSERT_EQ(argmax(v.data(), int64_t(n)), scan(v)) << "n=" << n << " trial=" << trial;
    }
  }
}

TEST(Sampler, FrequencyPenaltyCountsOccurrences) {
  SamplingParams p;
  p.temperature = 0;
  p.frequency_penalty = 0.1f;
  Sampler s(p, 2);
  s.accept(0);
  std::vector<float> l = {2.0f, 1.85f};  // 2.0 - 0.1 = 1.9 still wins
  EXPECT_EQ(s.sample(l.data()), 0);
  s.accept(0);
  l = {2.0f, 1.85f};  // 2.0 - 0.2 = 1.8 loses
  EXPECT_EQ(s.sample(l.data()), 1);
}

TEST(Sampler, PresencePenaltyOncePerToken) {
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 0.5f;
  Sampler s(p, 2);
  s.accept(0);
  s.accept(0);
  std::vector<float> l = {2.0f, 1.6f};  // 2.0 - 0.5 = 1.5 (not 1.0)
  EXPECT_EQ(s.sample(l.data()), 1);
  l = {2.0f, 1.4f};
  EXPECT_EQ(s.sample(l.data()), 0);
}

TEST(Sampler, TopKOneAndTinyTopPAreGreedy) {
  std::vector<float> base = {0.1f, 0.3f, 3.0f, 0.2f};
  for (int mode = 0; mode < 2; ++mode) {
    SamplingParams p;
    p.temperature = 1.5f;
    if (mode == 0) p.top_k = 1;
    else p.top_p = 1e-6f;
    for (uint64_t seed = 0; seed < 20; ++seed) {
      p.seed = seed;
      Sampler s(p, 4);
      auto l = base;
      EXPECT_EQ(s.sample(l.data()), 2);
    }
  }
}

TEST(Sampler, SeededRunsRepeatAndDifferentSeedsDiffer) {
  auto run = [](uint64_t seed) {
    SamplingParams p;
    p.temperature = 1.0f;
    p.seed = seed;
    Sampler s(p, 8);
    std::vector<int32_t> out;
    for (int i = 0; i < 32; ++i) {
      std::vector<float> l(8, 0.f);  // uniform
      out.push_back(s.sample(l.data()));
    }
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

}  // namespace
}  // namespace fathom
