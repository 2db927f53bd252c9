// AdamW, clipping and the schedule against naive double-precision transcriptions of the torch
// algorithms written here, and against two AdamW steps worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/thread_pool.h"
#include "train/optim.h"

namespace fathom::train {
namespace {

Param make(const std::string& name, std::vector<int64_t> shape, bool decay, bool trainable = true) {
  Param p;
  p.name = name;
  p.shape = std::move(shape);
  p.decay = decay;
  p.trainable = trainable;
  p.w.resize(size_t(p.numel()));
  p.g.assign(size_t(p.numel()), 0.f);
  for (size_t i = 0; i < p.w.size(); ++i) p.w[i] = float(std::sin(1.3 * double(i) + double(name.size())));
  return p;
}

// torch.optim.AdamW (single-tensor, no amsgrad), step by step, in double.
struct NaiveAdamW {
  double beta1, beta2, eps, wd;
  std::vector<double> w, m, v;
  int t = 0;
  void step(const std::vector<double>& g, double lr, bool decay) {
    ++t;
    for (size_t i = 0; i < w.size(); ++i) {
      if (decay) w[i] *= 1 - lr * wd;
      m[i] = beta1 * m[i] + (1 - beta1) * g[i];
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
      const double mhat = m[i] / (1 - std::pow(beta1, t));
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(beta2, t)) + eps;
      w[i] -= lr * mhat / denom;
    }
  }
};

TEST(AdamW, MatchesNaiveTorchAlgorithmOverSeveralSteps) {
  Param mat = make("w", {3, 4}, /*decay=*/true), vec = make("norm", {4}, /*decay=*/false);
  Param bias = make("router_bias", {4}, true, /*trainable=*/false);
  const std::vector<float> bias0 = bias.w;
  const AdamWConfig cfg{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1};
  AdamW opt({&mat, &bias, &vec}, cfg);
  NaiveAdamW nm{cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, {mat.w.begin(), mat.w.end()}, {}, {}};
  NaiveAdamW nv{cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay, {vec.w.begin(), vec.w.end()}, {}, {}};
  nm.m.assign(12, 0), nm.v.assign(12, 0), nv.m.assign(4, 0), nv.v.assign(4, 0);
  for (int s = 0; s < 6; ++s) {
    const double lr = 1e-2 * (1 + 0.3 * s);  // a different lr each step, as a schedule gives
    std::vector<double> gm(12), gv(4);
    for (size_t i = 0; i < 12; ++i) gm[i] = mat.g[i] = float(std::cos(0.7 * double(i) + s) * (s % 2 ? 0.01 : 3.0));
    for (size_t i = 0; i < 4; ++i) gv[i] = vec.g[i] = float(0.5 - 0.2 * double(i) + 0.1 * s);
    opt.step(lr);
    nm.step(gm, lr, true);
    nv.step(gv, lr, false);
    for (size_t i = 0; i < 12; ++i) ASSERT_NEAR(mat.w[i], nm.w[i], 2e-6 * (1 + std::abs(nm.w[i]))) << s << " " << i;
    for (size_t i = 0; i < 4; ++i) ASSERT_NEAR(vec.w[i], nv.w[i], 2e-6 * (1 + std::abs(nv.w[i]))) << s << " " << i;
    for (size_t i = 0; i < 12; ++i) ASSERT_NEAR(opt.m(0)[i], nm.m[i], 1e-6 * (1 + std::abs(nm.m[i])));
    for (size_t i = 0; i < 12; ++i) ASSERT_NEAR(opt.v(0)[i], nm.v[i], 1e-6 * (1 + std::abs(nm.v[i])));
  }
  EXPECT_EQ(opt.steps(), 6);
  EXPECT_EQ(bias.w, bias0);  // not trainable: never stepped, and has no moments
  EXPECT_TRUE(opt.m(1).empty());
}

// Worked by hand: lr 0.1, betas (0.9, 0.999), eps 1e-8, weight_decay 0.5, p = [1, -2].
// Step 1, g = [0.5, -1]: p *= 0.95 → [0.95, -1.9]; m = 0.1 g, v = 0.001 g², so m̂ = g, v̂ = g²
//   and the update is lr · g / |g| = [0.1, -0.1] (eps is far below fp32's resolution):
//   p = [0.85, -1.8].
// Step 2, g = [0.5, 0.5]: p *= 0.95 → [0.8075, -1.71];
//   m = 0.9 m + 0.1 g = [0.095, -0.04], v = 0.999 v + 0.001 g² = [0.00049975, 0.001249];
//   1 - 0.9² = 0.19, 1 - 0.999² = 0.001999: m̂ = [0.5, -0.04 / 0.19], v̂ = [0.25, 1249 / 1999];
//   p0 = 0.8075 - 0.1 · 0.5 / 0.5 = 0.7075,
//   p1 = -1.71 + 0.1 · (0.04 / 0.19) / sqrt(1249 / 1999) = -1.71 + 0.0266337 = -1.6833663.
TEST(AdamW, TwoStepsWorkedByHand) {
  Param p = make("p", {1, 2}, true);
  p.w = {1.f, -2.f};
  AdamW opt({&p}, {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.5});
  p.g = {0.5f, -1.f};
  opt.step(0.1);
  EXPECT_NEAR(p.w[0], 0.85, 1e-6);
  EXPECT_NEAR(p.w[1], -1.8, 1e-6);
  p.g = {0.5f, 0.5f};
  opt.step(0.1);
  EXPECT_NEAR(p.w[0], 0.7075, 1e-6);
  EXPECT_NEAR(p.w[1], -1.6833663, 2e-6);
}

TEST(AdamW, NoDecayWhenTheParamSaysSo) {
  // Zero gradient: Adam's update is 0, so only the decay could move the weights.
  Param d = make("d", {2, 2}, true), n = make("n", {2}, false);
  const std::vector<float> d0 = d.w, n0 = n.w;
  AdamW opt({&d, &n}, {.lr = 0.1, .weight_decay = 0.5});
  opt.step(0.1);
  for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(d.w[i], d0[i] * 0.95f);
  EXPECT_EQ(n.w, n0);
}

TEST(Clip, NormAndScalingAsClipGradNorm) {
  Param a = make("a", {2}, true), b = make("b", {1}, false), frozen = make("f", {1}, true, false);
  a.g = {3.f, 4.f};
  b.g = {12.f};
  frozen.g = {1000.f};  // not trainable: neither counted nor scaled
  std::vector<Param*> ps{&a, &b, &frozen};
  EXPECT_DOUBLE_EQ(grad_norm(ps), 13.0);

  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 0), 13.0);  // off
  EXPECT_EQ(a.g, (std::vector<float>{3.f, 4.f}));
  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 20), 13.0);  // coef > 1: untouched
  EXPECT_EQ(b.g, (std::vector<float>{12.f}));

  EXPECT_DOUBLE_EQ(clip_grad_norm(ps, 6.5), 13.0);
  const double coef = 6.5 / (13.0 + 1e-6);
  EXPECT_NEAR(a.g[0], 3 * coef, 1e-6);
  EXPECT_NEAR(a.g[1], 4 * coef, 1e-6);
  EXPECT_NEAR(b.g[0], 12 * coef, 1e-6);
  EXPECT_EQ(frozen.g[0], 1000.f);
  EXPECT_NEAR(grad_norm(ps), 6.5, 1e-5);
}

// Clipping folded into the update (grad_scale) gives the bits of clipping in place first,
// on one thread or a pool.
TEST(Clip, FoldedIntoTheUpdateEqualsClippingFirst) {
  Param a = make("a", {7, 5}, true), b = make("b", {5}, false);
  Param a2 = a, b2 = b;
  AdamWConfig cfg;
  cfg.weight_decay = 0.1;
  AdamW o1({&a, &b}, cfg), o2({&a2, &b2}, cfg);
  ThreadPool pool(3);
  for (int s = 0; s < 4; ++s) {
    for (size_t i = 0; i < a.g.size(); ++i) a.g[i] = a2.g[i] = 3.0f * float(std::cos(double(i) * 1.3 + s));
    for (size_t i = 0; i < b.g.size(); ++i) b.g[i] = b2.g[i] = 3.0f * float(std::sin(double(i) * 0.7 + s));
    clip_grad_norm({&a, &b}, 0.5);
    o1.step(1e-2);
    const double norm = grad_norm({&a2, &b2}, &pool);
    ASSERT_LT(clip_coefficient(norm, 0.5), 1.0f);
    o2.step(1e-2, &pool, clip_coefficient(norm, 0.5));
  }
  EXPECT_EQ(a.w, a2.w);
  EXPECT_EQ(b.w, b2.w);
  EXPECT_NE(a.w, make("a", {7, 5}, true).w);  // it moved
}

// The vector path gives the bits of the plain fp32 loop in torch's order of operations.
TEST(AdamW, VectorPathEqualsThePlainLoopBitForBit) {
  Param p = make("p", {3, 37}, true);  // 111 values: full vectors and a tail
  for (size_t i = 0; i < p.g.size(); ++i) p.g[i] = float(std::cos(0.9 * double(i))) * 0.01f;
  std::vector<float> w = p.w, m(w.size(), 0.f), v(w.size(), 0.f);
  AdamWConfig cfg;
  cfg.beta2 = 0.95;
  cfg.weight_decay = 0.1;
  AdamW opt({&p}, cfg);
  for (int t = 1; t <= 3; ++t) {
    const double lr = 1e-3 * t;
    opt.step(lr, nullptr, 0.75f);
    const float keep = float(1 - lr * 0.1), c1 = float(1 - 0.9), b2 = 0.95f, c2 = float(1 - 0.95);
    const float bc2 = float(std::sqrt(1 - std::pow(0.95, t))), step = float(lr / (1 - std::pow(0.9, t)));
    for (size_t k = 0; k < w.size(); ++k) {
      w[k] *= keep;
      const float g = p.g[k] * 0.75f;
      m[k] += c1 * (g - m[k]);
      v[k] = v[k] * b2 + c2 * g * g;
      w[k] -= step * (m[k] / (std::sqrt(v[k]) / bc2 + float(1e-8)));
    }
  }
  EXPECT_EQ(p.w, w);
  EXPECT_EQ(opt.m(0), m);
  EXPECT_EQ(opt.v(0), v);
}

TEST(Clip, NonFiniteNormLeavesGradients) {
  Param a = make("a", {2}, true);
  a.g = {NAN, 1.f};
  std::vector<Param*> ps{&a};
  EXPECT_TRUE(std::isnan(clip_grad_norm(ps, 1.0)));
  EXPECT_EQ(a.g[1], 1.f);
}

TEST(Schedule, WarmupEdges) {
  Schedule s{.kind = ScheduleKind::Cosine, .lr = 2.0, .warmup = 10, .total = 110};
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.2);  // lr · 1/10
  EXPECT_DOUBLE_EQ(s.lr_at(4), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(9), 2.0);   // the last warmup step reaches the peak
  EXPECT_DOUBLE_EQ(s.lr_at(10), 2.0);  // cosine starts at the peak
  Schedule c{.kind = ScheduleKind::Constant, .lr = 3e-4};
  EXPECT_DOUBLE_EQ(c.lr_at(0), 3e-4);  // no warmup: the full lr from step 0
  EXPECT_DOUBLE_EQ(c.lr_at(123456), 3e-4);
}

TEST(Schedule, Cosine) {
  Schedule s{.kind = ScheduleKind::Cosine, .lr = 1.0, .warmup = 10, .total = 110, .min_lr_ratio = 0.1};
  EXPECT_NEAR(s.lr_at(60), 0.55, 1e-12);  // midpoint: min + (max - min) / 2
  // A quarter in: min + (max - min) (1 + cos(pi/4)) / 2.
  EXPECT_NEAR(s.lr_at(35), 0.1 + 0.45 * (1 + std::sqrt(0.5)), 1e-12);
  EXPECT_NEAR(s.lr_at(110), 0.1, 1e-12);
  EXPECT_NEAR(s.lr_at(5000), 0.1, 1e-12);
  for (int64_t t = 10; t < 110; ++t) EXPECT_LT(s.lr_at(t + 1), s.lr_at(t)) << t;
}

TEST(Schedule, Wsd) {
  Schedule s{.kind = ScheduleKind::Wsd, .lr = 1.0, .warmup = 5, .total = 100, .min_lr_ratio = 0.1, .decay_frac = 0.2};
  EXPECT_EQ(s.decay_start(), 80);
  EXPECT_DOUBLE_EQ(s.lr_at(5), 1.0);
  EXPECT_DOUBLE_EQ(s.lr_at(79), 1.0);  // stable to the end of the first 80%
  EXPECT_DOUBLE_EQ(s.lr_at(80), 1.0);  // the decay starts from the peak
  EXPECT_NEAR(s.lr_at(90), 0.55, 1e-12);
  EXPECT_NEAR(s.lr_at(99), 1.0 - 0.9 * 19 / 20, 1e-12);
  EXPECT_NEAR(s.lr_at(100), 0.1, 1e-12);
  EXPECT_NEAR(s.lr_at(150), 0.1, 1e-12);
}

TEST(Schedule, ParseAndCheckErrors) {
  EXPECT_EQ(parse_schedule_kind("constant"), ScheduleKind::Constant);
  EXPECT_EQ(parse_schedule_kind("cosine"), ScheduleKind::Cosine);
  EXPECT_EQ(parse_schedule_kind("wsd"), ScheduleKind::Wsd);
  try {
    parse_schedule_kind("linear");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("constant, cosine or wsd, not 'linear'"), std::string::npos) << e.what();
  }
  EXPECT_THROW((Schedule{.kind = ScheduleKind::Cosine, .total = 0}.check()), Error);
  EXPECT_THROW((Schedule{.kind = ScheduleKind::Wsd, .warmup = 20, .total = 10}.check()), Error);
  EXPECT_THROW((Schedule{.min_lr_ratio = 1.5}.check()), Error);
  EXPECT_NO_THROW((Schedule{.kind = ScheduleKind::Constant}.check()));
}

}  // namespace
}  // namespace fathom::train
