// Quantization round trips and dequantize_row against independent decodings.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "backend/cpu/quantize.h"
#include "core/error.h"
#include "weights.h"

namespace fathom::cpu {
namespace {

// OCP e4m3fn by formula: bias 7, 3 mantissa bits, exponent 0 subnormal, S.1111.111 NaN.
double e4m3_by_formula(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? m / 8.0 * std::pow(2.0, -6) : (1 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}

float f16_bits(uint16_t h) { return f16_to_f32(h); }

TEST(Dequantize, F8AllCodesWithScales) {
  // One 2×256 matrix holding every code twice; block scales 0.5, 3 (row block 0), so the
  // two column blocks of 128 use different scales.
  const int64_t K = 256;
  std::vector<uint8_t> data(2 * K);
  for (int64_t k = 0; k < 2 * K; ++k) data[size_t(k)] = uint8_t(k);
  std::vector<float> scale = {0.5f, 3.0f};
  WeightView w{DType::F8_E4M3, 2, K, data.data(), scale.data(), 128};
  std::vector<float> out(static_cast<size_t>(K));
  for (int64_t r = 0; r < 2; ++r) {
    dequantize_row(w, r, out.data());
    for (int64_t k = 0; k < K; ++k) {
      const double ref = e4m3_by_formula(int(data[size_t(r * K + k)])) * (k < 128 ? 0.5 : 3.0);
      if (std::isnan(ref)) EXPECT_TRUE(std::isnan(out[size_t(k)]));
      else EXPECT_EQ(double(out[size_t(k)]), ref) << "code " << k;
    }
  }
}

TEST(Dequantize, F8KernelOnAllCodesMatchesDecode) {
  // The AVX2 decode (via f16) must equal the table for every finite code and any scale.
  const int64_t N = 3, K = 256 + 5;
  std::vector<uint8_t> data(static_cast<size_t>(N * K));
  for (size_t i = 0; i < data.size(); ++i) {
    uint8_t c = uint8_t(i * 7);
    if ((c & 0x7f) == 0x7f) c = 0x11;  // skip NaN codes
    data[i] = c;
  }
  std::vector<float> scale = {0.01f, 7.5f, 2.0f};
  WeightView w{DType::F8_E4M3, N, K, data.data(), scale.data(), 128};
  // x = one-hot rows recover single weights exactly.
  ThreadPool pool(1);
  for (int64_t k : {int64_t(0), int64_t(100), int64_t(200), int64_t(257), int64_t(260)}) {
    std::vector<float> x(size_t(K), 0.f), y(static_cast<size_t>(N)), ref(static_cast<size_t>(K));
    x[size_t(k)] = 1.f;
    for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
      if (isa == Isa::Avx2 && !cpu_has_avx2()) continue;
      matmul(w, x.data(), 1, y.data(), pool, {isa});
      for (int64_t n = 0; n < N; ++n) {
        dequantize_row(w, n, ref.data());
        EXPECT_EQ(y[size_t(n)], ref[size_t(k)]) << "n=" << n << " k=" << k;
      }
    }
  }
}

TEST(Dequantize, HalfFormats) {
  const uint16_t bf[] = {0x3f80, 0xc000, 0x0001, 0x7f80};
  const float bf_ref[] = {1.0f, -2.0f, std::ldexp(1.0f, -133), INFINITY};
  const uint16_t hf[] = {0x3c00, 0xc000, 0x0001, 0x7bff};
  const float hf_ref[] = {1.0f, -2.0f, std::ldexp(1.0f, -24), 65504.0f};
  std::vector<float> out(4);
  dequantize_row(WeightView{DType::BF16, 1, 4, bf}, 0, out.data());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[size_t(i)], bf_ref[i]);
  dequantize_row(WeightView{DType::F16, 1, 4, hf}, 0, out.data());
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[size_t(i)], hf_ref[i]);
}

TEST(Dequantize, BlockFormatsByHand) {
  uint8_t q8[34];
  const uint16_t d = 0x3800;  // 0.5
  std::memcpy(q8, &d, 2);
  for (int i = 0; i < 32; ++i) q8[2 + i] = uint8_t(int8_t(i * 8 - 128));
  std::vector<float> out(32);
  dequantize_row(WeightView{DType::Q8_0, 1, 32, q8}, 0, out.data());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[size_t(i)], 0.5f * float(i * 8 - 128));

  uint8_t q4[18];
  std::memcpy(q4, &d, 2);
  for (int i = 0; i < 16; ++i) q4[2 + i] = uint8_t(i | (15 - i) << 4);
  dequantize_row(WeightView{DType::Q4_0, 1, 32, q4}, 0, out.data());
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(out[size_t(i)], 0.5f * float(i - 8));
    EXPECT_EQ(out[size_t(16 + i)], 0.5f * float(7 - i));
  }
}

TEST(Quantize, Q8RoundTrip) {
  const int64_t n = 32 * 64;
  auto x = testing::random_floats(size_t(n), 1, 3.0f);
  for (int i = 0; i < 32; ++i) x[size_t(i)] = 0.f;
  std::vector<uint8_t> q(dtype_bytes(DType::Q8_0, n));
  quantize_row(DType::Q8_0, x.data(), n, q.data());
  std::vector<float> deq(static_cast<size_t>(n));
  dequantize_row(WeightView{DType::Q8_0, 1, n, q.data()}, 0, deq.data());
  for (int64_t b = 0; b < n / 32; ++b) {
    uint16_t h;
    std::memcpy(&h, q.data() + b * 34, 2);
    const float d = f16_bits(h);
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[size_t(b * 32 + i)]));
    EXPECT_NEAR(d, amax / 127.f, amax / 127.f * 1e-3);
    for (int i = 0; i < 32; ++i) {
      const size_t k = size_t(b * 32 + i);
      EXPECT_LE(std::fabs(x[k] - deq[k]), d * 0.5f * (1 + 1e-5f) + 1e-30f) << k;
    }
  }
}

TEST(Quantize, Q4RoundTrip) {
  const int64_t n = 32 * 64;
  auto x = testing::random_floats(size_t(n), 2, 0.7f);
  for (int i = 0; i < 32; ++i) x[size_t(i)] = 0.f;
  std::vector<uint8_t> q(dtype_bytes(DType::Q4_0, n));
  quantize_row(DType::Q4_0, x.data(), n, q.data());
  std::vector<float> deq(static_cast<size_t>(n));
  dequantize_row(WeightView{DType::Q4_0, 1, n, q.data()}, 0, deq.data());
  for (int64_t b = 0; b < n / 32; ++b) {
    uint16_t h;
    std::memcpy(&h, q.data() + b * 18, 2);
    const float d = f16_bits(h);
    float max = 0;
    for (int i = 0; i < 32; ++i)
      if (std::fabs(x[size_t(b * 32 + i)]) > std::fabs(max)) max = x[size_t(b * 32 + i)];
    EXPECT_NEAR(d, max / -8.f, std::fabs(max) / 8.f * 1e-3);
    for (int i = 0; i < 32; ++i) {
      const size_t k = size_t(b * 32 + i);
      const float ad = std::fabs(d);
      // Values beyond 7.5·d on the side opposite to max clamp at 15.
      const float bound = (d != 0 && x[k] / d > 7.5f) ? ad : ad * 0.5f;
      EXPECT_LE(std::fabs(x[k] - deq[k]), bound * (1 + 1e-5f) + 1e-30f) << k;
    }
  }
}

TEST(Quantize, E4m3EncoderMatchesReference) {
  // Every code, the midpoints between neighbours (ties to even), and random values.
  std::vector<float> vals;
  for (int c = 0; c < 0x7f; ++c) {
    const float a = fp8_e4m3_to_f32(uint8_t(c)), b = fp8_e4m3_to_f32(uint8_t(c + 1));
    vals.insert(vals.end(), {a, std::isnan(b) ? 460.f : (a + b) / 2, std::nextafter(a, 1e9f)});
  }
  for (float v : testing::random_floats(20000, 9, 50.f)) vals.push_back(v);
  for (float v : testing::random_floats(20000, 10, 0.01f)) vals.push_back(v);
  vals.insert(vals.end(), {448.f, 447.9f, 464.f, 1e9f, 0.f, -0.f, INFINITY, 1e-20f});
  for (float v : vals)
    for (float s : {1.f, -1.f}) EXPECT_EQ(f32_to_e4m3(v * s), f32_to_fp8_e4m3(v * s)) << v * s;
  EXPECT_EQ(f32_to_e4m3(NAN) & 0x7f, 0x7f);
}

TEST(Quantize, Fp8BlocksRoundTrip) {
  const int64_t rows = 200, cols = 300;
  auto x = testing::random_floats(size_t(rows * cols), 4, 2.f);
  for (int64_t c = 0; c < cols; ++c) x[size_t(150 * cols + c)] *= 100.f;  // one loud row block
  const auto w = testing::encode(DType::F8_E4M3, x, rows, cols);
  ASSERT_EQ(w.scale.size(), 2u * 3u);
  const auto deq = testing::dequantize(w);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float s = w.scale[size_t((r / 128) * 3 + c / 128)];
      const float v = x[size_t(r * cols + c)];
      // e4m3 relative step 2^-3 → error ≤ 2^-4 relative for normals, ≤ 2^-10·s absolute below.
      EXPECT_LE(std::fabs(v - deq[size_t(r * cols + c)]), std::fabs(v) / 16 + s * std::ldexp(1.f, -10) * 1.001f);
    }
}

}  // namespace
}  // namespace fathom::cpu
