// GGML block formats on the int8 kernels (backend/cpu/ggml_decode.h), on real blocks written
// by llama.cpp's quantizer (tests/data/gguf/dequant, with ggml's own dequantized values):
//  - the decoded form d·sc·q − dmin·mi gives ggml's value (to float rounding), for every block;
//  - the AVX2 decoders and kernel equal the scalar ones bit for bit, for one row of x (decode)
//    and many (prefill, panel path), and a row's result does not depend on the batch;
//  - the product agrees with a double-precision dot of ggml's dequantized weights and the
//    quantized activations.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "backend/cpu/ggml_decode.h"
#include "backend/cpu/kernels.h"
#include "core/error.h"
#include "io/ggml_quants.h"
#include "weights.h"

namespace fathom::cpu {
namespace {

namespace fs = std::filesystem;

struct Dump {
  DType dtype{};
  std::vector<uint8_t> raw;    // the blocks
  std::vector<float> values;   // ggml's dequantization of them
};

Dump read_dump(const std::string& name) {
  std::ifstream f(fs::path(FATHOM_TEST_DATA) / "gguf" / "dequant" / (name + ".bin"), std::ios::binary);
  uint32_t hdr[3] = {};
  f.read(reinterpret_cast<char*>(hdr), sizeof hdr);
  Dump d;
  d.dtype = ggml::block_dtype(ggml::Type(hdr[0])).value();
  d.raw.resize(hdr[2]);
  d.values.resize(hdr[1]);
  f.read(reinterpret_cast<char*>(d.raw.data()), std::streamsize(d.raw.size()));
  f.read(reinterpret_cast<char*>(d.values.data()), std::streamsize(d.values.size() * 4));
  EXPECT_TRUE(f.good()) << name;
  return d;
}

const char* kTypes[] = {"Q4_1", "Q5_0", "Q5_1", "IQ4_NL", "Q2_K",   "Q3_K",   "Q4_K",  "Q5_K",  "Q6_K",
                        "IQ4_XS", "IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ1_S", "IQ1_M"};

// An N × K matrix of the dump's blocks, block (r, c) = block (3r + 7c) mod count, so rows differ.
testing::TestWeight matrix(const Dump& d, int64_t N, int64_t K) {
  const int64_t nv = dtype_block_values(d.dtype), bb = int64_t(dtype_block_bytes(d.dtype));
  const int64_t count = int64_t(d.raw.size()) / bb, per_row = K / nv;
  testing::TestWeight w{d.dtype, N, K, std::vector<uint8_t>(size_t(N * per_row * bb)), {}};
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = 0; c < per_row; ++c)
      std::memcpy(w.data.data() + (r * per_row + c) * bb, d.raw.data() + ((3 * r + 7 * c) % count) * bb, size_t(bb));
  return w;
}

std::vector<float> run(const testing::TestWeight& w, const std::vector<float>& x, int64_t m, Isa isa, int threads) {
  ThreadPool pool(threads);
  std::vector<float> y(size_t(m * w.rows), NAN);
  matmul(w.view(), x.data(), m, y.data(), pool, {isa});
  return y;
}

TEST(GgmlDecode, DecodedFormIsGgmlsValue) {
  for (const char* name : kTypes) {
    SCOPED_TRACE(name);
    const Dump d = read_dump(name);
    const int nv = dtype_block_values(d.dtype);
    const size_t bb = dtype_block_bytes(d.dtype);
    ASSERT_EQ(d.raw.size() / bb * size_t(nv), d.values.size());
    int mismatches = 0, nonzero = 0;
    for (size_t b = 0; b * bb < d.raw.size(); ++b) {
      detail::DecodedBlock blk;
      detail::decode_block_scalar(d.dtype, d.raw.data() + b * bb, blk);
      for (int k = 0; k < nv; ++k) {
        const double v = double(blk.d) * blk.sc[k / 16] * blk.q[k] - double(blk.dmin) * blk.mi[k / 16];
        const double want = d.values[b * size_t(nv) + size_t(k)];
        nonzero += want != 0;
        // ggml rounds its sub-block scale to float first: a few ulps of the value.
        if (std::abs(v - want) > 4e-7 * std::abs(want) + 1e-12 && ++mismatches <= 5)
          ADD_FAILURE() << "block " << b << " value " << k << ": " << v << " vs ggml " << want;
        ASSERT_LE(std::abs(int(blk.q[k])), 127);
        if (detail::ggml_mins(d.dtype)) {
          ASSERT_GE(blk.q[k], 0) << "the kernels feed these quants unsigned";
        }
      }
    }
    EXPECT_EQ(mismatches, 0);
    EXPECT_GT(nonzero, int(d.values.size()) / 2);
  }
}

// The SIMD kernels (AVX2; AVX-512 VNNI where the CPU has it) against the scalar one.
void expect_equals_scalar_and_batch_invariant(Isa isa) {
  for (const char* name : kTypes) {
    SCOPED_TRACE(name);
    const Dump d = read_dump(name);
    // 37 weight rows: the 2-row tiles leave one; K: an odd block count for 32-value formats.
    const int64_t K = 4 * 256 + (dtype_block_values(d.dtype) == 32 ? 32 : 0), N = 37;
    const auto w = matrix(d, N, K);
    for (int64_t m : {1, 2, 5, 70}) {
      const auto x = testing::random_floats(size_t(m * K), uint32_t(100 + m));
      const auto ys = run(w, x, m, Isa::Scalar, 2), yv = run(w, x, m, isa, 2);
      ASSERT_EQ(std::memcmp(ys.data(), yv.data(), ys.size() * 4), 0) << "m=" << m;
      // Each row alone (the decode path) gives the same bits as inside the batch (panel path).
      for (int64_t i = 0; i < m; i += 3) {
        const std::vector<float> xi(x.begin() + i * K, x.begin() + (i + 1) * K);
        const auto yi = run(w, xi, 1, isa, 1);
        ASSERT_EQ(std::memcmp(yi.data(), yv.data() + i * N, size_t(N) * 4), 0) << "m=" << m << " row " << i;
      }
    }
  }
}

TEST(GgmlMatmul, Avx2EqualsScalarBitForBitAndRowsAreBatchInvariant) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  expect_equals_scalar_and_batch_invariant(Isa::Avx2);
}

TEST(GgmlMatmul, Avx512EqualsScalarBitForBitAndRowsAreBatchInvariant) {
  if (!cpu_has_avx512_vnni()) GTEST_SKIP() << "no AVX-512 VNNI";
  expect_equals_scalar_and_batch_invariant(Isa::Avx512);
}

TEST(GgmlMatmul, AgreesWithADoubleDotOfGgmlsValues) {
  for (const char* name : kTypes) {
    SCOPED_TRACE(name);
    const Dump d = read_dump(name);
    const int64_t K = 2 * 256, N = 16, m = 3;
    const auto w = matrix(d, N, K);
    // ggml's dequantized matrix, from the dump's values block by block.
    const int64_t nv = dtype_block_values(d.dtype), bb = int64_t(dtype_block_bytes(d.dtype));
    std::vector<float> wf(size_t(N * K));  // [N, K]
    for (int64_t r = 0; r < N; ++r)
      for (int64_t c = 0; c < K / nv; ++c) {
        const int64_t src = ((3 * r + 7 * c) % (int64_t(d.raw.size()) / bb)) * nv;
        std::memcpy(wf.data() + r * K + c * nv, d.values.data() + src, size_t(nv) * 4);
      }
    const auto x = testing::random_floats(size_t(m * K), 5);
    for (Isa isa : {Isa::Scalar, Isa::Auto}) {
      const auto y = run(w, x, m, isa, 2);
      for (int64_t i = 0; i < m; ++i) {
        // The kernels see x quantized to blocks of the weight format; so does the reference.
        std::vector<int8_t> q(static_cast<size_t>(K));
        std::vector<float> dq(static_cast<size_t>(K / nv));
        std::vector<int16_t> s16(static_cast<size_t>(K / 16));
        detail::quantize_acts_ggml(x.data() + i * K, K, int(nv), q.data(), dq.data(), s16.data());
        for (int64_t n = 0; n < N; ++n) {
          double ref = 0, mag = 0;
          for (int64_t k = 0; k < K; ++k) {
            const double xv = double(dq[size_t(k / nv)]) * q[size_t(k)];
            ref += double(wf[size_t(n * K + k)]) * xv;
            mag += std::abs(double(wf[size_t(n * K + k)]) * xv);
          }
          ASSERT_NEAR(y[size_t(i * N + n)], ref, 2e-6 * mag + 1e-30) << "row " << i << " col " << n;
        }
      }
    }
  }
}

TEST(GgmlMatmul, Avx2ActivationQuantizerEqualsScalar) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2";
  const int64_t K = 1024;
  auto x = testing::random_floats(size_t(K), 9);
  for (int64_t k = 0; k < 256; ++k) x[size_t(k)] = 0.0f;  // an all-zero block (d = 0)
  // Ties: amax 127 gives id = 1, so halves must round to even in both.
  for (int64_t k = 256; k < 288; ++k) x[size_t(k)] = float(k - 256) - 15.5f;
  x[287] = 127.0f;
  for (int64_t k = 512; k < 768; ++k) x[size_t(k)] *= 1e-30f;  // tiny scales
  for (int nv : {32, 256}) {
    const auto n = static_cast<size_t>(K);
    std::vector<int8_t> qs(n), qv(n);
    std::vector<float> ds(n / size_t(nv)), dv(n / size_t(nv));
    std::vector<int16_t> ss(n / 16), sv(n / 16);
    detail::quantize_acts_ggml(x.data(), K, nv, qs.data(), ds.data(), ss.data());
    detail::quantize_acts_ggml_avx2(x.data(), K, nv, qv.data(), dv.data(), sv.data());
    EXPECT_EQ(qs, qv) << "nv=" << nv;
    EXPECT_EQ(std::memcmp(ds.data(), dv.data(), ds.size() * 4), 0) << "nv=" << nv;
    EXPECT_EQ(ss, sv) << "nv=" << nv;
    EXPECT_EQ(qs[256], int8_t(-16)) << "nv=" << nv;  // -15.5 and -14.5 tie to even
    EXPECT_EQ(qs[257], int8_t(-14)) << "nv=" << nv;
  }
}

TEST(GgmlMatmul, DequantizeRowIsGgmls) {
  for (const char* name : kTypes) {
    SCOPED_TRACE(name);
    const Dump d = read_dump(name);
    const int64_t nv = dtype_block_values(d.dtype);
    const auto w = matrix(d, 1, int64_t(d.values.size()) / nv * nv);
    std::vector<float> row(d.values.size());
    // Block (0, c) of matrix() is block 7c mod count; with one row, c = block index when 7
    // and count are coprime (count is 16 or 128), so compare block by block.
    dequantize_row(w.view(), 0, row.data());
    const int64_t count = int64_t(d.values.size()) / nv;
    for (int64_t c = 0; c < count; ++c)
      ASSERT_EQ(std::memcmp(row.data() + c * nv, d.values.data() + ((7 * c) % count) * nv, size_t(nv) * 4), 0)
          << "block " << c;
  }
}

TEST(GgmlMatmul, RejectsRowsThatSplitABlock) {
  const Dump d = read_dump("Q4_K");
  testing::TestWeight w = matrix(d, 2, 256);
  w.cols = 128;  // a 256-value block type with 128 columns
  std::vector<float> x(128, 1.0f), y(2);
  ThreadPool pool(1);
  EXPECT_THROW(matmul(w.view(), x.data(), 1, y.data(), pool), Error);
}

}  // namespace
}  // namespace fathom::cpu
