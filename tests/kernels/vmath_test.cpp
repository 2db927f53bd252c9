// vmath.h: the exp against libm's in double, over the whole float range and its edges; the
// AVX2 softmax and SwiGLU against their scalar mirrors, bit for bit, on odd lengths.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/vmath.h"
#include "weights.h"

namespace fathom::cpu {
namespace {

// Distance in units in the last place of the exact value (normal results).
double ulps(float got, double ref) {
  const double ulp = std::ldexp(1.0, std::ilogb(ref) - 23);
  return std::fabs(double(got) - ref) / ulp;
}

TEST(Vmath, ExpWithinTwoUlpEverywhere) {
  double worst = 0;
  int checked = 0;
  for (double x = -110.0; x <= 90.0; x += 0.00731) {
    const float xf = float(x);
    const double ref = std::exp(double(xf));
    const float got = exp_lane(xf);
    if (ref > double(std::numeric_limits<float>::max())) {
      EXPECT_TRUE(std::isinf(got) && got > 0) << xf;
    } else if (ref >= double(std::numeric_limits<float>::min())) {
      worst = std::max(worst, ulps(got, ref));
      ++checked;
    } else {  // denormal or zero results: within two of the smallest steps
      EXPECT_LE(std::fabs(double(got) - ref), 2 * std::ldexp(1.0, -149)) << xf;
    }
  }
  EXPECT_GT(checked, 20000);
  EXPECT_LE(worst, 2.0);
  EXPECT_EQ(exp_lane(0.0f), 1.0f);
  EXPECT_EQ(exp_lane(-INFINITY), 0.0f);
  EXPECT_TRUE(std::isinf(exp_lane(INFINITY)));
  EXPECT_TRUE(std::isnan(exp_lane(NAN)));
}

std::vector<float> spread(size_t n, uint32_t seed) {
  auto v = testing::random_floats(n, seed);
  // Values across exp's range, its clamps and infinities, not only [-1, 1).
  const float edge[] = {-120.f, -104.f, -103.9f, -87.4f, 88.7f, 88.75f, 95.f, -INFINITY, INFINITY, 0.f, -0.f};
  for (size_t i = 0; i < n; ++i) v[i] = i % 5 == 3 ? edge[(i / 5) % std::size(edge)] : v[i] * 40.0f;
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

TEST(Vmath, SwigluMatchesScalarMirrorBitForBit) {
  for (int64_t n : {1, 7, 8, 9, 31, 64, 1411}) {
    const auto g0 = spread(size_t(n), uint32_t(n)), u = testing::random_floats(size_t(n), uint32_t(n + 1));
    auto g = g0, ref = g0;
    swiglu(g.data(), u.data(), n);
    detail::swiglu_scalar(ref.data(), u.data(), n);
    EXPECT_TRUE(same_bits(g, ref)) << n;
    for (int64_t i = 0; i < n; ++i) {  // and the definition, where it is finite
      const double x = g0[size_t(i)], want = x / (1.0 + std::exp(-x)) * u[size_t(i)];
      if (std::isfinite(want)) {
        EXPECT_NEAR(g[size_t(i)], want, 1e-6 * std::fabs(want) + 1e-30) << x;
      }
    }
  }
}

TEST(Vmath, SoftmaxMatchesScalarMirrorBitForBit) {
  for (int64_t n : {1, 5, 8, 13, 64, 577, 1000}) {
    auto x = testing::random_floats(size_t(n), uint32_t(7 * n));
    for (auto& v : x) v *= 30.0f;
    auto ref = x, mirror = x;
    softmax(x.data(), n);
    detail::softmax_scalar(mirror.data(), n);
    EXPECT_TRUE(same_bits(x, mirror)) << n;
    double m = -INFINITY, s = 0;
    for (float v : ref) m = std::max(m, double(v));
    for (float v : ref) s += std::exp(double(v) - m);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_NEAR(x[size_t(i)], std::exp(double(ref[size_t(i)]) - m) / s, 1e-6) << i;
      total += x[size_t(i)];
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
  }
}

}  // namespace
}  // namespace fathom::cpu
