// vec.h helpers against double-precision references.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/vec.h"
#include "weights.h"

namespace fathom::cpu {
namespace {

TEST(Vec, DotAndAxpy) {
  for (int64_t n : {0, 1, 7, 8, 33, 512, 1001}) {
    const auto a = testing::random_floats(size_t(n), 1), b = testing::random_floats(size_t(n), 2);
    double ref = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) ref += double(a[size_t(i)]) * b[size_t(i)], mag += std::fabs(double(a[size_t(i)]) * b[size_t(i)]);
    EXPECT_NEAR(dot(a.data(), b.data(), n), ref, 1e-6 * mag + 1e-30) << n;
    auto y = b;
    axpy(0.5f, a.data(), y.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(y[size_t(i)], b[size_t(i)] + 0.5 * a[size_t(i)], 1e-6) << i;
  }
}

TEST(Vec, LatentScoresAndWeightedSum) {
  const int64_t dim = 517, stride = 530;
  for (int64_t T : {1, 3, 4, 9}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      const auto f = testing::random_floats(size_t(T * stride), 3);
      std::vector<uint16_t> h(f.size());
      std::vector<float> fv(f.size());  // the values the cache holds
      for (size_t i = 0; i < f.size(); ++i) {
        h[i] = f32_to_bf16(f[i]);
        fv[i] = dt == DType::BF16 ? bf16_to_f32(h[i]) : f[i];
      }
      const LatentCache c{dt, dt == DType::BF16 ? static_cast<const void*>(h.data()) : f.data(), stride};
      const auto q = testing::random_floats(size_t(dim), 4), p = testing::random_floats(size_t(T), 5);
      std::vector<float> s(static_cast<size_t>(T)), o(static_cast<size_t>(dim));
      latent_scores(q.data(), c, T, dim, s.data());
      latent_weighted_sum(p.data(), c, T, dim, o.data());
      for (int64_t t = 0; t < T; ++t) {
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < dim; ++i) {
          const double v = double(q[size_t(i)]) * fv[size_t(t * stride + i)];
          ref += v, mag += std::fabs(v);
        }
        EXPECT_NEAR(s[size_t(t)], ref, 1e-6 * mag);
      }
      for (int64_t i = 0; i < dim; ++i) {
        double ref = 0, mag = 0;
        for (int64_t t = 0; t < T; ++t) {
          const double v = double(p[size_t(t)]) * fv[size_t(t * stride + i)];
          ref += v, mag += std::fabs(v);
        }
        EXPECT_NEAR(o[size_t(i)], ref, 1e-6 * mag + 1e-30);
      }
    }
  }
}

// Several heads at once must give exactly the per-head results (decode and prefill split the
// heads differently), for odd head counts, row counts across the L2 chunk, and odd dims.
TEST(Vec, LatentHeadsMatchOneHeadBitForBit) {
  for (int64_t dim : {517, 576, 40}) {
    const int64_t stride = dim + 11;
    for (int64_t T : {1, 5, 8, 61, 300}) {
      for (int64_t nh : {1, 2, 3, 16}) {
        const auto f = testing::random_floats(size_t(T * stride), 6);
        const LatentCache c{DType::F32, f.data(), stride};
        const int64_t qs = dim + 3, ps = T + 5, os = dim + 7;
        const auto q = testing::random_floats(size_t(nh * qs), 7), p = testing::random_floats(size_t(nh * ps), 8);
        std::vector<float> s(size_t(nh * ps), 0.f), o(size_t(nh * os), 0.f), s1(static_cast<size_t>(T)),
            o1(static_cast<size_t>(dim));
        latent_scores_heads(q.data(), qs, nh, c, T, dim, s.data(), ps);
        latent_weighted_sum_heads(p.data(), ps, nh, c, T, dim, o.data(), os);
        for (int64_t h = 0; h < nh; ++h) {
          latent_scores(q.data() + h * qs, c, T, dim, s1.data());
          latent_weighted_sum(p.data() + h * ps, c, T, dim, o1.data());
          ASSERT_EQ(0, std::memcmp(s1.data(), s.data() + h * ps, size_t(T) * 4)) << dim << " " << T << " " << nh << " " << h;
          ASSERT_EQ(0, std::memcmp(o1.data(), o.data() + h * os, size_t(dim) * 4)) << dim << " " << T << " " << nh << " " << h;
        }
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
