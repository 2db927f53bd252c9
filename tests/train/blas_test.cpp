// The GEMM wrapper's three layouts against a naive triple loop.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/random.h"
#include "train/blas.h"

namespace fathom::train {
namespace {

std::vector<float> rand_vec(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(double(splitmix64(seed * 1000003 + i) >> 11) * 0x1.0p-53 * 2 - 1);
  return v;
}

TEST(TrainBlas, LinearForwardAndBackwardMatchNaive) {
  const int64_t M = 7, K = 13, N = 5;
  auto x = rand_vec(M * K, 1), W = rand_vec(N * K, 2), dy = rand_vec(M * N, 3);
  std::vector<float> y(M * N, 9.0f), dx(M * K, 0.5f), dW(N * K, -0.25f);
  linear_fwd(x.data(), W.data(), y.data(), M, K, N);
  linear_bwd(dy.data(), x.data(), W.data(), dx.data(), dW.data(), M, K, N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0;
      for (int64_t k = 0; k < K; ++k) ref += double(x[i * K + k]) * W[j * K + k];
      EXPECT_NEAR(y[i * N + j], ref, 1e-5);
    }
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) {
      double ref = 0.5;  // backward adds
      for (int64_t j = 0; j < N; ++j) ref += double(dy[i * N + j]) * W[j * K + k];
      EXPECT_NEAR(dx[i * K + k], ref, 1e-5);
    }
  for (int64_t j = 0; j < N; ++j)
    for (int64_t k = 0; k < K; ++k) {
      double ref = -0.25;
      for (int64_t i = 0; i < M; ++i) ref += double(dy[i * N + j]) * x[i * K + k];
      EXPECT_NEAR(dW[j * K + k], ref, 1e-5);
    }
}

TEST(TrainBlas, EmptyInnerDimensionClearsOrScales) {
  std::vector<float> C = {1, 2, 3, 4};
  sgemm(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, C.data(), 2);
  for (float c : C) EXPECT_EQ(c, 0.0f);
}

}  // namespace
}  // namespace fathom::train
