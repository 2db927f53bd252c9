// Packed16 (packed.h): the layout round-trips exactly, the VNNI and AVX2 kernels are bit-identical
// to their scalar mirror on odd shapes, batch/thread invariant, and agrees with the row-major kernels
// (same int32 block sums, different f32 summation order) and with exact double math.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/packed.h"
#include "core/error.h"
#include "weights.h"

namespace fathom::cpu {
namespace {

using testing::encode;
using testing::random_floats;
using testing::TestWeight;

struct Packed {
  AlignedBytes bytes;
  WeightView view;
};

Packed pack(const TestWeight& w) {
  Packed p;
  ThreadPool pool(2);
  p.view = pack16(w.view(), p.bytes, &pool);
  return p;
}

std::vector<float> run(const WeightView& w, const std::vector<float>& x, int64_t m, Isa isa, int threads) {
  ThreadPool pool(threads);
  std::vector<float> y(size_t(m * w.rows), NAN);
  matmul(w, x.data(), m, y.data(), pool, {isa});
  return y;
}

const DType kFormats[] = {DType::Q8_0, DType::Q4_0};

TEST(Packed, RowsRoundTripExactly) {
  for (DType t : kFormats)
    for (int64_t N : {1, 15, 16, 17, 40}) {
      const int64_t K = 96;
      const TestWeight w = encode(t, random_floats(size_t(N * K), uint32_t(N)), N, K);
      const Packed p = pack(w);
      EXPECT_EQ(p.view.layout, Layout::Packed16);
      EXPECT_EQ(p.view.bytes(), size_t((N + 15) / 16) * packed_geometry(t, N, K).group_bytes);
      std::vector<uint8_t> row(w.view().row_bytes());
      std::vector<float> a(static_cast<size_t>(K)), b(static_cast<size_t>(K));
      for (int64_t r = 0; r < N; ++r) {
        copy_row_blocks(p.view, r, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), w.view().row(r), row.size())) << dtype_name(t) << " N=" << N << " r=" << r;
        dequantize_row(p.view, r, a.data());
        dequantize_row(w.view(), r, b.data());
        ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * 4));
      }
    }
}

TEST(Packed, SlicesFollowGroups) {
  const TestWeight w = encode(DType::Q8_0, random_floats(64 * 64, 3), 64, 64);
  const Packed p = pack(w);
  const WeightView s = slice_rows(p.view, 32, 16);
  std::vector<float> a(64), b(64);
  for (int64_t r = 0; r < 16; ++r) {
    dequantize_row(s, r, a.data());
    dequantize_row(w.view(), 32 + r, b.data());
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), 64 * 4));
  }
  EXPECT_THROW(slice_rows(p.view, 8, 16), Error);
}

// Each SIMD kernel against the scalar mirror, bit for bit, on odd shapes (partial groups,
// odd block counts, every tile height).
void expect_matches_scalar_mirror(Isa isa) {
  for (DType t : kFormats)
    for (int64_t N : {1, 7, 16, 33, 129})
      for (int64_t K : {32, 64, 96, 288}) {
        const TestWeight w = encode(t, random_floats(size_t(N * K), uint32_t(N * 1000 + K)), N, K);
        const Packed p = pack(w);
        for (int64_t m : {1, 2, 3, 5, 7, 13, 64}) {
          const auto x = random_floats(size_t(m * K), uint32_t(7 + m));
          const auto ys = run(p.view, x, m, Isa::Scalar, 2);
          const auto yv = run(p.view, x, m, isa, 2);
          ASSERT_EQ(0, std::memcmp(ys.data(), yv.data(), ys.size() * 4))
              << dtype_name(t) << " N=" << N << " K=" << K << " m=" << m;
        }
      }
}

TEST(Packed, VnniMatchesScalarMirrorBitForBit) {
  if (!cpu_has_avx512_vnni()) GTEST_SKIP() << "no AVX-512 VNNI";
  expect_matches_scalar_mirror(Isa::Avx512);
}

TEST(Packed, Avx2MatchesScalarMirrorBitForBit) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  expect_matches_scalar_mirror(Isa::Avx2);
}

// Extreme values at the AVX2 kernel's int16 limits: activations of ±127 in same-signed pairs,
// and on even rows weights that agree in sign with them everywhere (Q8_0 127 / -128: pair sums
// 32258 / 32512; Q4_0 nibble 15 where x > 0: 8·2·15·127 = 30480 per lane and block). Odd rows
// mix -128, 127 and -127 (Q8_0), 0 and 15 (Q4_0).
TEST(Packed, ExtremeValuesStayExact) {
  const int64_t N = 16, K = 64;
  auto x_at = [](int64_t k) { return (k / 2) % 2 ? 1.0f : -1.0f; };  // quantizes to ±127
  for (DType t : kFormats) {
    TestWeight w = encode(t, random_floats(size_t(N * K), 5), N, K);
    const int64_t bb = t == DType::Q8_0 ? 34 : 18;
    uint8_t* data = w.data.data();
    for (int64_t r = 0; r < N; ++r)
      for (int64_t b = 0; b < K / 32; ++b)
        for (int64_t e = 0; e < bb - 2; ++e) {
          uint8_t& v = data[r * (K / 32) * bb + b * bb + 2 + e];
          const bool pos = x_at(b * 32 + e) > 0;  // Q4_0: elements e and e + 16 share the sign
          if (r % 2 == 0) v = t == DType::Q8_0 ? uint8_t(pos ? 0x7f : 0x80) : uint8_t(pos ? 0xFF : 0x00);
          else v = t == DType::Q8_0 ? uint8_t((r + e) % 3 == 0 ? 0x80 : (r + e) % 3 == 1 ? 0x7f : 0x81)
                                    : uint8_t((r + e) % 2 ? 0xF0 : 0x0F);
        }
    const Packed p = pack(w);
    std::vector<float> x(size_t(2 * K));
    for (int64_t k = 0; k < 2 * K; ++k) x[size_t(k)] = x_at(k % K);
    const auto ys = run(p.view, x, 2, Isa::Scalar, 1);
    const auto ref = testing::reference_dot(w, x, 2);
    for (size_t i = 0; i < ys.size(); ++i) ASSERT_NEAR(ys[i], ref.exact[i], 1e-5 * ref.mag[i]) << dtype_name(t) << " " << i;
    for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
      if (isa == Isa::Avx2 ? !cpu_has_avx2() : !cpu_has_avx512_vnni()) continue;
      const auto yv = run(p.view, x, 2, isa, 1);
      ASSERT_EQ(0, std::memcmp(ys.data(), yv.data(), ys.size() * 4)) << dtype_name(t);
    }
  }
}

TEST(Packed, BatchAndThreadInvariance) {
  const int64_t N = 150, K = 256, m = 23;
  for (DType t : kFormats) {
    const TestWeight w = encode(t, random_floats(size_t(N * K), 11), N, K);
    const Packed p = pack(w);
    const auto x = random_floats(size_t(m * K), 12);
    const auto all = run(p.view, x, m, Isa::Auto, 2);
    for (int threads : {1, 3}) {
      const auto again = run(p.view, x, m, Isa::Auto, threads);
      ASSERT_EQ(0, std::memcmp(all.data(), again.data(), all.size() * 4)) << threads << " threads";
    }
    for (int64_t i = 0; i < m; i += 5) {  // each row alone
      const std::vector<float> xi(x.begin() + i * K, x.begin() + (i + 1) * K);
      const auto one = run(p.view, xi, 1, Isa::Auto, 2);
      ASSERT_EQ(0, std::memcmp(one.data(), all.data() + i * N, size_t(N) * 4)) << dtype_name(t) << " row " << i;
    }
  }
}

// Same int8 products as the row-major kernels; only the f32 accumulation order differs.
TEST(Packed, AgreesWithRowMajorAndExactMath) {
  const int64_t N = 70, K = 320, m = 9;
  for (DType t : kFormats) {
    const TestWeight w = encode(t, random_floats(size_t(N * K), 21), N, K);
    const Packed p = pack(w);
    const auto x = random_floats(size_t(m * K), 22);
    const auto yp = run(p.view, x, m, Isa::Auto, 2);
    const auto yr = run(w.view(), x, m, Isa::Scalar, 2);
    const auto ref = testing::reference_dot(w, x, m);
    for (int64_t i = 0; i < m * N; ++i) {
      const double mag = ref.mag[size_t(i)];
      ASSERT_NEAR(yp[size_t(i)], yr[size_t(i)], 1e-5 * mag) << dtype_name(t) << " i=" << i / N << " n=" << i % N;
      // Activations are quantized to 8 bits: error ≲ Σ|w|·d_x/2 ≤ mag/127.
      ASSERT_NEAR(yp[size_t(i)], ref.exact[size_t(i)], mag / 127.0) << dtype_name(t) << " i=" << i / N << " n=" << i % N;
    }
  }
}

TEST(Packed, RejectsWhatItCannotPack) {
  const TestWeight bf = encode(DType::BF16, random_floats(32 * 32, 1), 32, 32);
  AlignedBytes out;
  EXPECT_THROW(pack16(bf.view(), out, nullptr), Error);
  EXPECT_THROW(packed_geometry(DType::Q8_0, 4, 48), Error);
}


// Decode-sized sections (every task ≤ 4 rows) are split into chunks that threads take and
// steal at run time (matmul.cpp). Mixed layouts and formats, many chunks per task: every
// output is written, with the same bits as one thread and as one task at a time.
TEST(Packed, StreamingSectionsMatchOneThread) {
  struct Case { DType t; int64_t N, K, m; bool packed; };
  const Case cases[] = {{DType::Q8_0, 700, 512, 1, true},  {DType::BF16, 300, 256, 2, false},
                        {DType::Q4_0, 1000, 256, 4, true}, {DType::Q8_0, 45, 96, 1, false},
                        {DType::F8_E4M3, 260, 384, 3, false}, {DType::Q4_0, 17, 64, 1, true}};
  std::vector<TestWeight> ws;
  std::vector<Packed> ps;
  std::vector<WeightView> views;
  std::vector<std::vector<float>> xs;
  for (size_t j = 0; j < std::size(cases); ++j) {
    const Case& c = cases[j];
    ws.push_back(encode(c.t, random_floats(size_t(c.N * c.K), uint32_t(60 + j)), c.N, c.K));
    xs.push_back(random_floats(size_t(c.m * c.K), uint32_t(70 + j)));
  }
  for (size_t j = 0; j < std::size(cases); ++j) {
    if (cases[j].packed && packing_pays(cases[j].t)) ps.push_back(pack(ws[j]));
    else ps.push_back(Packed{nullptr, ws[j].view()});
    views.push_back(ps.back().view);
  }
  auto section = [&](int threads) {
    ThreadPool pool(threads);
    std::vector<std::vector<float>> ys;
    std::vector<MatmulTask> tasks;
    for (size_t j = 0; j < std::size(cases); ++j) ys.emplace_back(size_t(cases[j].m * cases[j].N), NAN);
    for (size_t j = 0; j < std::size(cases); ++j) tasks.push_back({&views[j], xs[j].data(), cases[j].m, ys[j].data()});
    matmul_many(tasks.data(), tasks.size(), pool);
    return ys;
  };
  const auto one = section(1);
  for (size_t j = 0; j < std::size(cases); ++j) {
    for (float v : one[j]) ASSERT_FALSE(std::isnan(v)) << j;
    const auto sep = run(views[j], xs[j], cases[j].m, Isa::Auto, 2);
    ASSERT_EQ(0, std::memcmp(sep.data(), one[j].data(), sep.size() * 4)) << j;
  }
  for (int threads : {2, 3, 5}) {
    const auto ys = section(threads);
    for (size_t j = 0; j < std::size(cases); ++j)
      ASSERT_EQ(0, std::memcmp(ys[j].data(), one[j].data(), ys[j].size() * 4)) << j << " threads=" << threads;
  }
}


// Consecutive tasks on one input share its quantization where the activation layout is the
// same (matmul.cpp); a different dtype (offset) or layout must not reuse it.
TEST(Packed, SharedInputsMatchSeparateCalls) {
  const int64_t K = 256;
  struct Case { DType t; int64_t N; bool packed; int x; };
  const Case cases[] = {{DType::Q8_0, 300, true, 0}, {DType::Q8_0, 70, true, 0},  {DType::Q4_0, 129, true, 0},
                        {DType::Q8_0, 33, false, 0}, {DType::Q8_0, 48, false, 0}, {DType::Q4_0, 64, false, 0},
                        {DType::Q8_0, 80, true, 1},  {DType::Q8_0, 16, true, 0}};
  for (int64_t m : {1, 3, 9}) {
    const std::vector<std::vector<float>> xs = {random_floats(size_t(m * K), 80), random_floats(size_t(m * K), 81)};
    std::vector<TestWeight> ws;
    std::vector<Packed> ps;
    std::vector<WeightView> views;
    for (size_t j = 0; j < std::size(cases); ++j)
      ws.push_back(encode(cases[j].t, random_floats(size_t(cases[j].N * K), uint32_t(90 + j)), cases[j].N, K));
    for (size_t j = 0; j < std::size(cases); ++j) {
      if (cases[j].packed && packing_pays(cases[j].t)) ps.push_back(pack(ws[j]));
      else ps.push_back(Packed{nullptr, ws[j].view()});
      views.push_back(ps.back().view);
    }
    for (int threads : {1, 2}) {
      ThreadPool pool(threads);
      std::vector<std::vector<float>> ys;
      std::vector<MatmulTask> tasks;
      for (const Case& c : cases) ys.emplace_back(size_t(m * c.N), NAN);
      for (size_t j = 0; j < std::size(cases); ++j)
        tasks.push_back({&views[j], xs[size_t(cases[j].x)].data(), m, ys[j].data()});
      matmul_many(tasks.data(), tasks.size(), pool);
      for (size_t j = 0; j < std::size(cases); ++j) {
        const auto ref = run(views[j], xs[size_t(cases[j].x)], m, Isa::Auto, 1);
        ASSERT_EQ(0, std::memcmp(ref.data(), ys[j].data(), ref.size() * 4)) << j << " m=" << m << " threads=" << threads;
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
