// DeepSeekMoE routing semantics, with expected selections worked out by hand from
// DeepSeek's inference/model.py and transformers' routers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "layers/ffn.h"

namespace fathom {
namespace {

struct Routed {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

Routed route(const RouterConfig& rc, const std::vector<float>& logits, const std::vector<float>* bias) {
  Routed r{std::vector<int32_t>(size_t(rc.top_k)), std::vector<float>(size_t(rc.top_k))};
  std::vector<float> tmp(size_t(2 * rc.n_experts));
  route_token(rc, logits.data(), bias ? bias->data() : nullptr, r.ids.data(), r.w.data(), tmp.data());
  return r;
}

RouterConfig v3(int64_t E, int64_t k, int64_t groups, int64_t keep) {
  RouterConfig rc;
  rc.n_experts = E;
  rc.top_k = k;
  rc.n_group = groups;
  rc.topk_group = keep;
  rc.scoring = ScoringFunc::Sigmoid;
  rc.method = TopkMethod::NoauxTc;
  rc.norm_topk_prob = true;
  rc.routed_scaling_factor = 2.5;
  return rc;
}

TEST(Routing, ExcludedGroupsNeverChosenEvenWhenKeptScoresAreNegative) {
  // 3 groups of 2. All logits 0 → sigmoid 0.5; the bias sets the selection scores to
  //   group 0: -0.1, -0.1 (top-2 sum -0.2)   group 1: -0.2, -0.2 (-0.4)   group 2: 0.5, -5 (-4.5)
  // Keeping 2 groups drops group 2, although its expert 4 has the best biased score.
  const std::vector<float> logits(6, 0.f);
  const std::vector<float> target = {-0.1f, -0.1f, -0.2f, -0.2f, 0.5f, -5.f};
  std::vector<float> bias(6);
  for (int i = 0; i < 6; ++i) bias[size_t(i)] = target[size_t(i)] - 0.5f;
  Routed r = route(v3(6, 2, 3, 2), logits, &bias);
  std::vector<int32_t> ids = r.ids;
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 1}));
  // The bias selects but never weights: both weights are sigmoid(0) = 0.5, normalized, × 2.5.
  for (float w : r.w) EXPECT_FLOAT_EQ(w, 0.5f / 1.0f * 2.5f);
}

TEST(Routing, WeightsComeFromUnbiasedScores) {
  // One group; logits give sigmoid scores s; a bias flips the order of experts 0 and 1.
  const std::vector<float> logits = {2.f, 1.f, -1.f, -3.f};
  const std::vector<float> bias = {0.f, 1.f, 0.f, 0.f};
  RouterConfig rc = v3(4, 2, 1, 1);
  Routed r = route(rc, logits, &bias);
  const float s0 = 1.f / (1.f + std::exp(-2.f)), s1 = 1.f / (1.f + std::exp(-1.f));
  EXPECT_EQ(r.ids[0], 1);  // biased: s1 + 1 > s0
  EXPECT_EQ(r.ids[1], 0);
  EXPECT_NEAR(r.w[0], s1 / (s0 + s1) * 2.5f, 1e-6);
  EXPECT_NEAR(r.w[1], s0 / (s0 + s1) * 2.5f, 1e-6);
}

TEST(Routing, GreedySoftmaxWithoutNormalization) {
  RouterConfig rc;
  rc.n_experts = 4;
  rc.top_k = 2;
  rc.scoring = ScoringFunc::Softmax;
  rc.method = TopkMethod::Greedy;
  rc.routed_scaling_factor = 1.5;
  const std::vector<float> logits = {0.f, 3.f, 1.f, 2.f};
  Routed r = route(rc, logits, nullptr);
  double z = std::exp(0.0) + std::exp(3.0) + std::exp(1.0) + std::exp(2.0);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{1, 3}));
  EXPECT_NEAR(r.w[0], std::exp(3.0) / z * 1.5, 1e-6);
  EXPECT_NEAR(r.w[1], std::exp(2.0) / z * 1.5, 1e-6);
}

TEST(Routing, GroupLimitedGreedyUsesGroupMax) {
  // Groups {0,1}, {2,3}, {4,5}; group max picks groups 2 (logit 5) and 0 (logit 4), so expert 3
  // (logit 3.9, second best of group 1) loses to expert 1 (logit 1) of group 0.
  RouterConfig rc;
  rc.n_experts = 6;
  rc.top_k = 3;
  rc.n_group = 3;
  rc.topk_group = 2;
  rc.scoring = ScoringFunc::Softmax;
  rc.method = TopkMethod::GroupLimitedGreedy;
  const std::vector<float> logits = {4.f, 1.f, 3.5f, 3.9f, 5.f, 0.f};
  // group maxima: 4, 3.9, 5 → keep groups 2 and 0.
  Routed r = route(rc, logits, nullptr);
  EXPECT_EQ(r.ids, (std::vector<int32_t>{4, 0, 1}));
}

}  // namespace
}  // namespace fathom
