// The bf16 GEMM: its rounding against known values and an independent rounding, the scalar
// mirror against a double-precision sum, and the AVX-512 kernel against the mirror in all
// three layouts, odd shapes, padded leading dimensions, alpha/beta and any pool size.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/random.h"
#include "core/thread_pool.h"
#include "train/gemm_bf16.h"

namespace fathom::train {
namespace {

std::vector<float> rand_vec(size_t n, uint64_t seed, float scale = 1.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = scale * float(double(splitmix64(seed * 1000003 + i) >> 11) * 0x1.0p-53 * 2 - 1);
  return v;
}

float from_bits(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// Nearest value with an 8-bit significand, ties to even, through double arithmetic
// (normal range only): independent of the bit trick under test.
double ref_round(float x) {
  if (x == 0) return x;
  int e = 0;
  const double m = std::frexp(double(x), &e);  // |m| in [0.5, 1)
  return std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8);
}

struct Shape {
  int64_t M, N, K;
};

// One problem: op(A) [M,K], op(B) [K,N] stored per layout with padded leading dimensions.
struct Problem {
  bool ta, tb;
  Shape s;
  int64_t lda, ldb, ldc;
  std::vector<float> A, B, C;
  Problem(bool ta_, bool tb_, Shape s_, uint64_t seed) : ta(ta_), tb(tb_), s(s_) {
    lda = (ta ? s.M : s.K) + 3;
    ldb = (tb ? s.K : s.N) + 5;
    ldc = s.N + 2;
    A = rand_vec(size_t((ta ? s.K : s.M) * lda), seed);
    B = rand_vec(size_t((tb ? s.N : s.K) * ldb), seed + 1);
    C = rand_vec(size_t(s.M * ldc), seed + 2);
  }
  float a(int64_t i, int64_t k) const { return ta ? A[k * lda + i] : A[i * lda + k]; }
  float b(int64_t k, int64_t j) const { return tb ? B[j * ldb + k] : B[k * ldb + j]; }
};

std::vector<float> run_kernel(const Problem& p, float alpha, float beta, std::vector<float> C, ThreadPool* pool) {
  sgemm_bf16(p.ta, p.tb, p.s.M, p.s.N, p.s.K, alpha, p.A.data(), p.lda, p.B.data(), p.ldb, beta, C.data(), p.ldc, pool);
  return C;
}

std::vector<float> run_scalar(const Problem& p, float alpha, float beta, std::vector<float> C) {
  sgemm_bf16_scalar(p.ta, p.tb, p.s.M, p.s.N, p.s.K, alpha, p.A.data(), p.lda, p.B.data(), p.ldb, beta, C.data(),
                    p.ldc);
  return C;
}

// Two fp32 sums of the same exact products (bf16 x bf16 fits in fp32) differ by at most
// about K roundings of the running sum, each under 2^-24 of sum |a||b|, plus the epilogue.
void expect_close(const Problem& p, float alpha, float beta, const std::vector<float>& C0,
                  const std::vector<float>& got, const std::vector<float>& want, const char* what) {
  int bad = 0;
  std::vector<double> ra(size_t(p.s.M * p.s.K)), rb(size_t(p.s.N * p.s.K));  // |op(A)| [M,K], |op(B)ᵀ| [N,K]
  for (int64_t i = 0; i < p.s.M; ++i)
    for (int64_t k = 0; k < p.s.K; ++k) ra[size_t(i * p.s.K + k)] = std::fabs(ref_round(p.a(i, k)));
  for (int64_t j = 0; j < p.s.N; ++j)
    for (int64_t k = 0; k < p.s.K; ++k) rb[size_t(j * p.s.K + k)] = std::fabs(ref_round(p.b(k, j)));
  for (int64_t i = 0; i < p.s.M; ++i)
    for (int64_t j = 0; j < p.s.N; ++j) {
      double mag = 0;
      for (int64_t k = 0; k < p.s.K; ++k) mag += ra[size_t(i * p.s.K + k)] * rb[size_t(j * p.s.K + k)];
      const double c0 = beta == 0 ? 0.0 : std::fabs(double(C0[i * p.ldc + j]));
      const double tol = double(p.s.K + 4) * 0x1.0p-23 * (std::fabs(alpha) * mag + std::fabs(beta) * c0) + 1e-30;
      const float g = got[i * p.ldc + j], w = want[i * p.ldc + j];
      if (!(std::fabs(double(g) - w) <= tol) && ++bad <= 5)
        ADD_FAILURE() << what << " ta=" << p.ta << " tb=" << p.tb << " M,N,K=" << p.s.M << "," << p.s.N << ","
                      << p.s.K << " at (" << i << "," << j << "): " << g << " vs " << w << " tol " << tol;
    }
  // Padding columns of C are never touched.
  for (int64_t i = 0; i < p.s.M; ++i)
    for (int64_t j = p.s.N; j < p.ldc; ++j)
      ASSERT_EQ(0, std::memcmp(&got[i * p.ldc + j], &C0[i * p.ldc + j], 4))
          << what << " padding (" << i << "," << j << ")";
}

void check(const Problem& p, float alpha, float beta, const char* what) {
  expect_close(p, alpha, beta, p.C, run_kernel(p, alpha, beta, p.C, nullptr), run_scalar(p, alpha, beta, p.C), what);
}

// Edges of the 12x32 tile, K odd and past one 512 block, rows past one 192 block, columns
// past one 2048 block.
const Shape kShapes[] = {{1, 1, 1},      {7, 13, 5},      {12, 32, 2},   {13, 33, 3},   {33, 47, 129},
                         {130, 70, 517}, {25, 100, 256},  {5, 300, 513}, {200, 40, 9},  {14, 2100, 1030}};

TEST(Bf16Round, KnownValuesTiesToEven) {
  EXPECT_EQ(round_bf16(1.0f), 0x3f80);
  EXPECT_EQ(round_bf16(-2.0f), 0xc000);
  EXPECT_EQ(round_bf16(0.0f), 0x0000);
  EXPECT_EQ(round_bf16(-0.0f), 0x8000);
  // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even significand (1).
  EXPECT_EQ(round_bf16(from_bits(0x3f808000)), 0x3f80);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  EXPECT_EQ(round_bf16(from_bits(0x3f818000)), 0x3f82);
  // Just above and below a half.
  EXPECT_EQ(round_bf16(from_bits(0x3f808001)), 0x3f81);
  EXPECT_EQ(round_bf16(from_bits(0x3f817fff)), 0x3f81);
  // The largest finite float rounds up to infinity; infinities stay.
  EXPECT_EQ(round_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(round_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(round_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  // A NaN whose payload sits in the low bits stays a NaN (and does not carry into the sign).
  EXPECT_TRUE(std::isnan(bf16_to_float(round_bf16(from_bits(0x7f800001)))));
  EXPECT_TRUE(std::isnan(bf16_to_float(round_bf16(from_bits(0x7fffffff)))));
  EXPECT_EQ(bf16_to_float(0x4049), 3.140625f);
}

TEST(Bf16Round, MatchesNearestEvenInDouble) {
  const auto v = rand_vec(20000, 7, 1000.0f);
  for (float x : v) ASSERT_EQ(double(bf16_to_float(round_bf16(x))), ref_round(x)) << x;
}

TEST(Bf16Gemm, ScalarMatchesDoubleSumOfRoundedInputs) {
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const Shape& s : {Shape{7, 13, 5}, Shape{33, 47, 129}, Shape{9, 20, 517}}) {
        const Problem p(ta, tb, s, 11);
        const float alpha = 0.75f, beta = -1.5f;
        const auto got = run_scalar(p, alpha, beta, p.C);
        for (int64_t i = 0; i < s.M; ++i)
          for (int64_t j = 0; j < s.N; ++j) {
            double ref = 0, mag = 0;
            for (int64_t k = 0; k < s.K; ++k) {
              const double t = ref_round(p.a(i, k)) * ref_round(p.b(k, j));
              ref += t;
              mag += std::fabs(t);
            }
            const double c0 = p.C[i * p.ldc + j];
            ref = alpha * ref + beta * c0;
            const double tol = double(s.K + 4) * 0x1.0p-24 * (alpha * mag + std::fabs(beta * c0));
            ASSERT_NEAR(got[i * p.ldc + j], ref, tol) << ta << tb << " " << i << "," << j;
          }
      }
}

TEST(Bf16Gemm, ScalarRoundsInputs) {
  // 1 + 2^-9 rounds to 1: the fp32 product would be 1 + 2^-8.
  const float a = 1.0f + 0x1.0p-9f, b = 1.0f + 0x1.0p-9f;
  float c = 5.0f;
  sgemm_bf16_scalar(false, false, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
  EXPECT_EQ(c, 1.0f);
}

TEST(Bf16Gemm, KernelMatchesScalarAllLayouts) {
  if (!bf16_gemm_supported()) GTEST_SKIP() << "no AVX-512 BF16";
  uint64_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const Shape& s : kShapes) {
        const Problem p(ta, tb, s, seed++);
        check(p, 1.0f, 0.0f, "alpha 1 beta 0");
        check(p, 1.0f, 1.0f, "alpha 1 beta 1");
        check(p, -0.5f, 2.0f, "alpha -0.5 beta 2");
      }
}

// Whichever path this CPU takes (the kernel, or rounded copies through fp32 BLAS).
TEST(Bf16Gemm, MatchesScalarOnAnyCpu) {
  uint64_t seed = 200;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const Shape& s : {Shape{7, 13, 5}, Shape{130, 70, 517}}) {
        const Problem p(ta, tb, s, seed++);
        check(p, 0.5f, 1.0f, "any cpu");
      }
}

TEST(Bf16Gemm, KernelRoundsInputsToNearestEven) {
  if (!bf16_gemm_supported()) GTEST_SKIP() << "no AVX-512 BF16";
  // A = [1 + 3·2^-8, 1 + 2^-8] (ties: up, down) and B = [1, 1]: (1 + 2^-6) + 1.
  const float A[2] = {from_bits(0x3f818000), from_bits(0x3f808000)}, B[2] = {1.0f, 1.0f};
  float C = 0;
  sgemm_bf16(false, false, 1, 1, 2, 1.0f, A, 2, B, 1, 0.0f, &C, 1, nullptr);
  EXPECT_EQ(C, 2.0f + 0x1.0p-6f);
}

TEST(Bf16Gemm, BetaZeroIgnoresNaNInC) {
  if (!bf16_gemm_supported()) GTEST_SKIP() << "no AVX-512 BF16";
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const Shape& s : {Shape{7, 13, 5}, Shape{130, 70, 517}}) {
        Problem p(ta, tb, s, 300);
        std::vector<float> nan_c(p.C.size(), std::numeric_limits<float>::quiet_NaN());
        const auto got = run_kernel(p, 1.0f, 0.0f, nan_c, nullptr);
        const auto want = run_scalar(p, 1.0f, 0.0f, p.C);
        for (int64_t i = 0; i < s.M; ++i)
          for (int64_t j = 0; j < s.N; ++j) ASSERT_FALSE(std::isnan(got[i * p.ldc + j])) << i << "," << j;
        expect_close(p, 1.0f, 0.0f, nan_c, got, want, "nan C");
      }
}

TEST(Bf16Gemm, EmptyInnerDimensionScalesC) {
  std::vector<float> C = {1, std::numeric_limits<float>::quiet_NaN(), 3, 4};
  sgemm_bf16(false, false, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 2, 0.0f, C.data(), 2, nullptr);
  for (float c : C) EXPECT_EQ(c, 0.0f);
  C = {1, 2, 3, 4};
  sgemm_bf16(false, true, 2, 2, 0, 1.0f, nullptr, 1, nullptr, 1, 2.0f, C.data(), 2, nullptr);
  EXPECT_EQ(C[3], 8.0f);
}

TEST(Bf16Gemm, PoolSizeDoesNotChangeBits) {
  if (!bf16_gemm_supported()) GTEST_SKIP() << "no AVX-512 BF16";
  ThreadPool p1(1), p2(2), p3(3);
  uint64_t seed = 500;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (const Shape& s : {Shape{130, 70, 517}, Shape{301, 1100, 300}, Shape{20, 700, 64}}) {
        const Problem p(ta, tb, s, seed++);
        const auto ref = run_kernel(p, 0.5f, 1.0f, p.C, nullptr);
        for (ThreadPool* pool : {&p1, &p2, &p3}) {
          const auto got = run_kernel(p, 0.5f, 1.0f, p.C, pool);
          ASSERT_EQ(0, std::memcmp(got.data(), ref.data(), got.size() * 4)) << "threads " << pool->size();
        }
      }
}

}  // namespace
}  // namespace fathom::train
