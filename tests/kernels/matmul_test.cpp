// matmul: AVX2 against the scalar path for every format and odd shapes, batch and thread
// invariance, FP8 against exact dequantization, exact int8 sums.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "weights.h"

namespace fathom::cpu {
namespace {

using testing::encode;
using testing::is_quant;
using testing::random_floats;
using testing::TestWeight;

const DType kAll[] = {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::Q8_0, DType::Q4_0};

std::vector<float> run(const TestWeight& w, const std::vector<float>& x, int64_t m, Isa isa, int threads) {
  ThreadPool pool(threads);
  std::vector<float> y(size_t(m * w.rows), NAN);
  matmul(w.view(), x.data(), m, y.data(), pool, {isa});
  return y;
}

bool bitwise_equal(const float* a, const float* b, size_t n) { return n == 0 || std::memcmp(a, b, n * 4) == 0; }

TEST(Matmul, Avx2MatchesScalarOnOddShapes) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  const int64_t Ns[] = {1, 7, 33, 129};
  const int64_t Kf[] = {1, 5, 8, 130, 257};
  const int64_t Kq[] = {32, 96, 288};
  const int64_t Ms[] = {1, 2, 3, 7, 64};
  for (DType t : kAll) {
    const auto& Ks = is_quant(t) ? std::vector<int64_t>(std::begin(Kq), std::end(Kq))
                                 : std::vector<int64_t>(std::begin(Kf), std::end(Kf));
    for (int64_t N : Ns)
      for (int64_t K : Ks) {
        const TestWeight w = encode(t, random_floats(size_t(N * K), uint32_t(N * 1000 + K)), N, K);
        for (int64_t m : Ms) {
          const auto x = random_floats(size_t(m * K), uint32_t(7 + m));
          const auto ys = run(w, x, m, Isa::Scalar, 2);
          const auto yv = run(w, x, m, Isa::Avx2, 2);
          const auto scale = testing::reference_dot(w, x, m).mag;
          for (size_t i = 0; i < ys.size(); ++i)
            ASSERT_NEAR(ys[i], yv[i], 1e-6 * scale[i] + 1e-30)
                << dtype_name(t) << " N=" << N << " K=" << K << " m=" << m << " i=" << i;
        }
      }
  }
}

TEST(Matmul, BatchAndThreadInvariance) {
  const int64_t N = 133, m = 61;  // m·K ≥ 2^14: quantized on the pool
  for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
    if (isa == Isa::Avx2 && !cpu_has_avx2()) continue;
    for (DType t : kAll) {
      const int64_t K = is_quant(t) ? 320 : 301;
      const TestWeight w = encode(t, random_floats(size_t(N * K), 11), N, K);
      const auto x = random_floats(size_t(m * K), 12);
      const auto y = run(w, x, m, isa, 2);
      for (int threads : {1, 3})
        ASSERT_TRUE(bitwise_equal(y.data(), run(w, x, m, isa, threads).data(), y.size()))
            << dtype_name(t) << " threads=" << threads;
      ThreadPool pool(2);
      for (int64_t i = 0; i < m; ++i) {
        std::vector<float> yi(static_cast<size_t>(N));
        matmul(w.view(), x.data() + i * K, 1, yi.data(), pool, {isa});
        ASSERT_TRUE(bitwise_equal(yi.data(), y.data() + i * N, size_t(N))) << dtype_name(t) << " row " << i;
      }
      // A sub-batch starting elsewhere changes the tile shapes rows fall in.
      std::vector<float> y5(static_cast<size_t>(5 * N));
      matmul(w.view(), x.data() + 3 * K, 5, y5.data(), pool, {isa});
      ASSERT_TRUE(bitwise_equal(y5.data(), y.data() + 3 * N, y5.size())) << dtype_name(t);
    }
  }
}

TEST(Matmul, AgreesWithDequantizedReference) {
  // Float formats are exact fp32 math on the exactly decoded weights; int8 formats quantize
  // x to Q8, whose error is bounded by d_x/2 per element.
  const int64_t N = 130, K = 300, Kq = 320, m = 5;
  for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
    if (isa == Isa::Avx2 && !cpu_has_avx2()) continue;
    for (DType t : kAll) {
      const int64_t k = is_quant(t) ? Kq : K;
      const TestWeight w = encode(t, random_floats(size_t(N * k), 21, 0.05f), N, k);
      const auto x = random_floats(size_t(m * k), 22);
      const auto y = run(w, x, m, isa, 2);
      const auto ref = testing::reference_dot(w, x, m);
      for (int64_t i = 0; i < m * N; ++i) {
        const double tol = is_quant(t) ? 0.02 * ref.mag[size_t(i)] : 1e-5 * ref.mag[size_t(i)];
        ASSERT_NEAR(y[size_t(i)], ref.exact[size_t(i)], tol) << dtype_name(t) << " " << i / N << "," << i % N;
      }
    }
  }
}

// With power-of-two scales and integer activations the float scaling is exact, so the
// scalar and AVX2 int8 paths must agree bit for bit, and with the integer dot.
TEST(Matmul, Int8SumsExact) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  const int64_t N = 19, K = 512, m = 6;
  std::mt19937 rng(5);
  std::vector<float> x(static_cast<size_t>(m * K));
  for (size_t i = 0; i < x.size(); ++i) x[i] = i % 32 == 7 ? -127.f : float(int(rng() % 255) - 127);
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    TestWeight w{t, N, K, std::vector<uint8_t>(dtype_bytes(t, K) * N), {}};
    std::vector<int> wi(static_cast<size_t>(N * K));
    const size_t bb = dtype_block_bytes(t);
    const uint16_t one = 0x3C00;  // f16 1.0
    for (int64_t n = 0; n < N; ++n)
      for (int64_t b = 0; b < K / 32; ++b) {
        uint8_t* blk = w.data.data() + size_t(n) * dtype_bytes(t, K) + size_t(b) * bb;
        std::memcpy(blk, &one, 2);
        for (int e = 0; e < 32; ++e) {
          int v;
          if (t == DType::Q8_0) {
            v = int(rng() % 255) - 127;
            blk[2 + e] = uint8_t(int8_t(v));
          } else {
            const int q = int(rng() % 16);
            v = q - 8;
            blk[2 + e % 16] |= uint8_t(e < 16 ? q : q << 4);
          }
          wi[size_t(n * K + b * 32 + e)] = v;
        }
      }
    const auto ys = run(w, x, m, Isa::Scalar, 1);
    const auto yv = run(w, x, m, Isa::Avx2, 2);
    ASSERT_TRUE(bitwise_equal(ys.data(), yv.data(), ys.size())) << dtype_name(t);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t n = 0; n < N; ++n) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; ++k) s += int64_t(x[i * K + k]) * wi[n * K + k];
        ASSERT_EQ(yv[i * N + n], float(s)) << dtype_name(t);
      }
  }
}

TEST(Matmul, ActivationQuantizersAgree) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  const int64_t K = 32 * 40;
  auto x = random_floats(size_t(K), 3);
  for (int i = 0; i < 32; ++i) x[size_t(32 + i)] = 0.f;                 // all-zero block
  for (int i = 0; i < 32; ++i) x[size_t(64 + i)] = float(i - 16) * 0.5f;  // exact ties
  std::vector<int8_t> qa(static_cast<size_t>(K)), qb(static_cast<size_t>(K));
  std::vector<float> da(static_cast<size_t>(K / 32)), db(static_cast<size_t>(K / 32));
  for (int i = 0; i < 32; ++i) x[size_t(96 + i)] = i % 2 ? 1e30f : -1e30f;  // ±127 throughout
  std::vector<int32_t> sa(static_cast<size_t>(K / 32)), sb(sa.size());
  detail::quantize_act_row_scalar(x.data(), K, qa.data(), da.data(), sa.data());
  detail::quantize_act_row_avx2(x.data(), K, qb.data(), db.data(), sb.data());
  EXPECT_EQ(qa, qb);
  EXPECT_EQ(da, db);
  EXPECT_EQ(sa, sb);
  for (int64_t b = 0; b < K / 32; ++b) {  // the block sums are of the bytes written
    int32_t s = 0;
    for (int i = 0; i < 32; ++i) s += qb[size_t(b * 32 + i)];
    EXPECT_EQ(sb[size_t(b)], s) << b;
  }
  EXPECT_EQ(qb[96], -127);
  std::vector<int8_t> qc(qb.size());  // without sums: the same bytes
  detail::quantize_act_row_avx2(x.data(), K, qc.data(), db.data(), nullptr);
  EXPECT_EQ(qc, qb);
  for (int64_t k = 0; k < K; ++k) EXPECT_LE(std::fabs(x[size_t(k)] - da[size_t(k / 32)] * qa[size_t(k)]), da[size_t(k / 32)] * 0.5f * 1.0001f);
}

TEST(Matmul, RejectsBadShapes) {
  ThreadPool pool(1);
  std::vector<uint8_t> data(1024);
  WeightView w{DType::Q8_0, 2, 40, data.data()};
  std::vector<float> x(40), y(2);
  EXPECT_THROW(matmul(w, x.data(), 1, y.data(), pool), Error);
  WeightView f8{DType::F8_E4M3, 2, 16, data.data()};
  EXPECT_THROW(matmul(f8, x.data(), 1, y.data(), pool), Error);  // no scales
}

}  // namespace
}  // namespace fathom::cpu

namespace fathom::cpu {
namespace {

TEST(Matmul, ManyEqualsSeparateCalls) {
  // Mixed formats and sizes in one section, bit-identical to separate matmul calls.
  const DType types[] = {DType::Q4_0, DType::BF16, DType::Q8_0, DType::F8_E4M3, DType::Q8_0};
  const int64_t Ns[] = {70, 33, 5, 129, 300}, Ks[] = {256, 77, 64, 200, 96}, Ms[] = {1, 3, 9, 2, 0};
  std::vector<TestWeight> ws;
  std::vector<std::vector<float>> xs, ys, refs;
  for (int j = 0; j < 5; ++j) {
    ws.push_back(encode(types[j], random_floats(size_t(Ns[j] * Ks[j]), uint32_t(40 + j)), Ns[j], Ks[j]));
    xs.push_back(random_floats(size_t(Ms[j] * Ks[j]), uint32_t(50 + j)));
    ys.emplace_back(size_t(Ms[j] * Ns[j]), NAN);
  }
  for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
    if (isa == Isa::Avx2 && !cpu_has_avx2()) continue;
    for (int threads : {1, 2, 3}) {
      ThreadPool pool(threads);
      std::vector<WeightView> views;
      for (auto& w : ws) views.push_back(w.view());
      std::vector<MatmulTask> tasks;
      for (int j = 0; j < 5; ++j) tasks.push_back({&views[size_t(j)], xs[size_t(j)].data(), Ms[j], ys[size_t(j)].data()});
      matmul_many(tasks.data(), tasks.size(), pool, {isa});
      for (int j = 0; j < 5; ++j) {
        const auto ref = run(ws[size_t(j)], xs[size_t(j)], Ms[j], isa, 2);
        ASSERT_TRUE(bitwise_equal(ref.data(), ys[size_t(j)].data(), ref.size())) << j << " threads=" << threads;
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
