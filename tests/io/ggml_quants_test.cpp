// GGML block types: the size table, bit-exact agreement with ggml's own row converters on
// blocks cut from llama.cpp-quantized fixtures (tests/data/gguf/dequant), and hand-packed
// blocks whose values the test derives from the format description alone.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "io/ggml_quants.h"

namespace fathom::ggml {
namespace {
namespace fs = std::filesystem;

// ---- the type table ----

TEST(GgmlTypes, BlockSizesOfEveryType) {
  struct Row {
    Type t;
    const char* name;
    int64_t values, bytes;
  };
  // Sizes from the published block layouts (values per block, bytes per block).
  const Row rows[] = {
      {Type::F32, "F32", 1, 4},          {Type::F16, "F16", 1, 2},
      {Type::Q4_0, "Q4_0", 32, 18},      {Type::Q4_1, "Q4_1", 32, 20},
      {Type::Q5_0, "Q5_0", 32, 22},      {Type::Q5_1, "Q5_1", 32, 24},
      {Type::Q8_0, "Q8_0", 32, 34},      {Type::Q8_1, "Q8_1", 32, 36},
      {Type::Q2_K, "Q2_K", 256, 84},     {Type::Q3_K, "Q3_K", 256, 110},
      {Type::Q4_K, "Q4_K", 256, 144},    {Type::Q5_K, "Q5_K", 256, 176},
      {Type::Q6_K, "Q6_K", 256, 210},    {Type::Q8_K, "Q8_K", 256, 292},
      {Type::IQ2_XXS, "IQ2_XXS", 256, 66}, {Type::IQ2_XS, "IQ2_XS", 256, 74},
      {Type::IQ3_XXS, "IQ3_XXS", 256, 98}, {Type::IQ1_S, "IQ1_S", 256, 50},
      {Type::IQ4_NL, "IQ4_NL", 32, 18},  {Type::IQ3_S, "IQ3_S", 256, 110},
      {Type::IQ2_S, "IQ2_S", 256, 82},   {Type::IQ4_XS, "IQ4_XS", 256, 136},
      {Type::I8, "I8", 1, 1},            {Type::I16, "I16", 1, 2},
      {Type::I32, "I32", 1, 4},          {Type::I64, "I64", 1, 8},
      {Type::F64, "F64", 1, 8},          {Type::IQ1_M, "IQ1_M", 256, 56},
      {Type::BF16, "BF16", 1, 2},
  };
  for (const Row& r : rows) {
    const TypeInfo* info = type_info(r.t);
    ASSERT_NE(info, nullptr) << r.name;
    EXPECT_STREQ(info->name, r.name);
    EXPECT_EQ(info->block_values, r.values) << r.name;
    EXPECT_EQ(info->block_bytes, r.bytes) << r.name;
    EXPECT_EQ(row_bytes(r.t, r.values * 3), r.bytes * 3) << r.name;
  }
  for (uint32_t bad : {4u, 5u, 31u, 39u, 1000u, 0xffffffffu}) EXPECT_EQ(type_info(bad), nullptr) << bad;
}

TEST(GgmlTypes, TheBlockDTypesAgreeWithTheGgufTypes) {
  // core's table of GGML block DTypes (id, name, sizes) against the GGUF type table above,
  // which the published layouts pin; and the mapping both ways, Q8_0/Q4_0 included.
  int seen = 0;
  for (const GgmlBlock& g : kGgmlBlocks) {
    const TypeInfo* info = type_info(g.ggml_id);
    ASSERT_NE(info, nullptr) << g.name;
    EXPECT_STREQ(info->name, g.name);
    EXPECT_EQ(info->block_values, g.values) << g.name;
    EXPECT_EQ(info->block_bytes, int64_t(g.bytes)) << g.name;
    EXPECT_EQ(dtype_name(g.dtype), g.name);
    EXPECT_EQ(block_dtype(Type(g.ggml_id)), g.dtype) << g.name;
    EXPECT_EQ(ggml_type(g.dtype), Type(g.ggml_id)) << g.name;
    ++seen;
  }
  EXPECT_EQ(seen, 17);
  EXPECT_EQ(block_dtype(Type::Q8_0), DType::Q8_0);
  EXPECT_EQ(block_dtype(Type::Q4_0), DType::Q4_0);
  EXPECT_EQ(ggml_type(DType::Q4_0), Type::Q4_0);
  EXPECT_EQ(block_dtype(Type::Q8_K), std::nullopt);
  EXPECT_EQ(block_dtype(Type::F32), std::nullopt);
  EXPECT_THROW(ggml_type(DType::BF16), Error);
}

TEST(GgmlTypes, RejectsPartialBlocksAndUnsupportedTypes) {
  std::vector<uint8_t> src(4096, 0);
  std::vector<float> dst(1024);
  EXPECT_THROW(dequantize_row(Type::Q4_K, src.data(), dst.data(), 255), Error);
  EXPECT_THROW(dequantize_row(Type::Q8_0, src.data(), dst.data(), 33), Error);
  EXPECT_THROW(row_bytes(Type::Q6_K, 100), Error);
  EXPECT_THROW(dequantize_row(Type(4), src.data(), dst.data(), 32), Error);
  try {
    dequantize_row(Type::Q8_1, src.data(), dst.data(), 32);
    FAIL() << "Q8_1 has no row converter";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "GGUF type Q8_1 is not supported yet");
  }
}

// ---- agreement with ggml's converters on real quantized blocks ----

struct RefDump {
  uint32_t type = 0;
  uint32_t n = 0;
  std::vector<uint8_t> raw;
  std::vector<float> expected;
};

RefDump read_dump(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  uint32_t hdr[3] = {};
  f.read(reinterpret_cast<char*>(hdr), sizeof hdr);
  RefDump d;
  d.type = hdr[0];
  d.n = hdr[1];
  d.raw.resize(hdr[2]);
  d.expected.resize(d.n);
  f.read(reinterpret_cast<char*>(d.raw.data()), std::streamsize(d.raw.size()));
  f.read(reinterpret_cast<char*>(d.expected.data()), std::streamsize(d.n) * 4);
  EXPECT_TRUE(f.good()) << p;
  return d;
}

TEST(GgmlDequant, BitExactWithGgmlOnFixtureBlocks) {
  const fs::path dir = fs::path(FATHOM_TEST_DATA) / "gguf" / "dequant";
  // Every type that llama.cpp writes into the published DeepSeek GGUFs.
  const char* all[] = {"F32",    "F16",    "BF16",   "Q8_0",   "Q4_0",    "Q4_1",  "Q5_0", "Q5_1",
                       "Q2_K",   "Q3_K",   "Q4_K",   "Q5_K",   "Q6_K",    "IQ4_NL", "IQ4_XS",
                       "IQ3_XXS", "IQ3_S", "IQ2_XXS", "IQ2_XS", "IQ2_S",  "IQ1_S", "IQ1_M"};
  int checked = 0;
  for (const char* name : all) {
    SCOPED_TRACE(name);
    const fs::path p = dir / (std::string(name) + ".bin");
    ASSERT_TRUE(fs::exists(p)) << p;
    const RefDump d = read_dump(p);
    const TypeInfo* info = type_info(d.type);
    ASSERT_NE(info, nullptr);
    ASSERT_STREQ(info->name, name);
    ASSERT_EQ(int64_t(d.raw.size()), int64_t(d.n) / info->block_values * info->block_bytes);
    std::vector<float> got(d.n, -12345.0f);
    if (!info->supported) {
      try {
        dequantize_row(Type(d.type), d.raw.data(), got.data(), d.n);
        FAIL() << "expected an error for an unsupported type";
      } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), std::string("GGUF type ") + name + " is not supported yet");
      }
      continue;
    }
    dequantize_row(Type(d.type), d.raw.data(), got.data(), d.n);
    int mismatches = 0;
    for (uint32_t i = 0; i < d.n; ++i) {
      uint32_t a, b;
      std::memcpy(&a, &got[i], 4);
      std::memcpy(&b, &d.expected[i], 4);
      if (a != b && ++mismatches <= 5)
        ADD_FAILURE() << "value " << i << ": got " << got[i] << ", ggml " << d.expected[i];
    }
    EXPECT_EQ(mismatches, 0);
    // The dump is not all zeros: the comparison means something.
    int nonzero = 0;
    for (float v : d.expected) nonzero += v != 0.0f;
    EXPECT_GT(nonzero, int(d.n) / 2);
    ++checked;
  }
  EXPECT_GE(checked, 15);  // F32 .. IQ4_XS
}

// ---- hand-packed blocks ----
//
// Each test draws logical quants and scales, packs them by the format description and
// expects value = scale * quant - min computed in double. The super-block scales are powers
// of two and the quants small integers, so every product is exact in float and the expected
// value does not depend on the order of operations.

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  ASSERT_EQ(double(f16_to_f32(h)), double(v));
  std::memcpy(p, &h, 2);
}

void expect_values(Type t, const std::vector<uint8_t>& block, const std::vector<double>& want) {
  std::vector<float> got(want.size());
  dequantize_row(t, block.data(), got.data(), int64_t(want.size()));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(double(got[i]), want[i]) << type_info(t)->name << " value " << i;
}

// IQ4_NL / IQ4_XS levels, as the format publishes them.
constexpr int kLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

std::vector<int> draw(std::mt19937& rng, int n, int lo, int hi) {
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<int> v(n);
  for (int& x : v) x = u(rng);
  return v;
}

TEST(GgmlDequant, LegacyBlocksHandPacked) {
  std::mt19937 rng(17);
  for (int rep = 0; rep < 20; ++rep) {
    const std::vector<int> q4 = draw(rng, 32, 0, 15), q5 = draw(rng, 32, 0, 31), q8 = draw(rng, 32, -128, 127);
    const float d = rep % 2 ? 0.25f : -0.0625f, m = -3.5f;
    // Value j sits in the low nibble of byte j, value 16 + j in its high nibble.
    auto nibbles = [](const std::vector<int>& q, uint8_t* out) {
      for (int j = 0; j < 16; ++j) out[j] = uint8_t((q[j] & 15) | (q[j + 16] & 15) << 4);
    };
    auto high_bits = [](const std::vector<int>& q, uint8_t* out) {  // bit i of a little-endian u32
      uint32_t qh = 0;
      for (int i = 0; i < 32; ++i) qh |= uint32_t(q[i] >> 4) << i;
      std::memcpy(out, &qh, 4);
    };
    std::vector<double> want(32);
    {
      std::vector<uint8_t> b(18);
      put_f16(b.data(), d);
      nibbles(q4, b.data() + 2);
      for (int i = 0; i < 32; ++i) want[i] = double(d) * (q4[i] - 8);
      expect_values(Type::Q4_0, b, want);
      for (int i = 0; i < 32; ++i) want[i] = double(d) * kLevels[q4[i]];
      expect_values(Type::IQ4_NL, b, want);
    }
    {
      std::vector<uint8_t> b(20);
      put_f16(b.data(), d);
      put_f16(b.data() + 2, m);
      nibbles(q4, b.data() + 4);
      for (int i = 0; i < 32; ++i) want[i] = double(d) * q4[i] + m;
      expect_values(Type::Q4_1, b, want);
    }
    {
      std::vector<uint8_t> b(22);
      put_f16(b.data(), d);
      high_bits(q5, b.data() + 2);
      nibbles(q5, b.data() + 6);
      for (int i = 0; i < 32; ++i) want[i] = double(d) * (q5[i] - 16);
      expect_values(Type::Q5_0, b, want);
    }
    {
      std::vector<uint8_t> b(24);
      put_f16(b.data(), d);
      put_f16(b.data() + 2, m);
      high_bits(q5, b.data() + 4);
      nibbles(q5, b.data() + 8);
      for (int i = 0; i < 32; ++i) want[i] = double(d) * q5[i] + m;
      expect_values(Type::Q5_1, b, want);
    }
    {
      std::vector<uint8_t> b(34);
      put_f16(b.data(), d);
      for (int i = 0; i < 32; ++i) b[2 + i] = uint8_t(int8_t(q8[i]));
      for (int i = 0; i < 32; ++i) want[i] = double(d) * q8[i];
      expect_values(Type::Q8_0, b, want);
    }
  }
}

// Q4_K / Q5_K: eight 6-bit scales sc[s] and mins mn[s] in 12 bytes. s < 4: low 6 bits of byte s
// (scale) and byte 4 + s (min); s >= 4: low nibble of byte 4 + s (scale) and high nibble
// (min), with their top 2 bits in the top 2 bits of byte s - 4 (scale) and byte s (min).
void pack_k4_scales(const std::vector<int>& sc, const std::vector<int>& mn, uint8_t* out) {
  for (int s = 0; s < 4; ++s) {
    out[s] = uint8_t((sc[s] & 63) | (sc[s + 4] >> 4) << 6);
    out[s + 4] = uint8_t((mn[s] & 63) | (mn[s + 4] >> 4) << 6);
    out[s + 8] = uint8_t((sc[s + 4] & 15) | (mn[s + 4] & 15) << 4);
  }
}

TEST(GgmlDequant, Q4KAndQ5KHandPacked) {
  std::mt19937 rng(4);
  for (int rep = 0; rep < 20; ++rep) {
    const float d = rep % 2 ? 0.125f : -0.5f, dmin = rep % 3 ? 0.0625f : -0.25f;
    const std::vector<int> sc = draw(rng, 8, 0, 63), mn = draw(rng, 8, 0, 63), q = draw(rng, 256, 0, 31);
    std::vector<double> want(256);
    // Value i: sub-block s = i / 32; in its 64-value group g = i / 64 it is byte i % 32 of
    // the group's 32 qs bytes, low nibble for the first 32 values.
    std::vector<uint8_t> b4(144, 0);
    put_f16(b4.data(), d);
    put_f16(b4.data() + 2, dmin);
    pack_k4_scales(sc, mn, b4.data() + 4);
    for (int i = 0; i < 256; ++i) {
      const int s = i / 32, g = i / 64, l = i % 32;
      b4[16 + 32 * g + l] |= uint8_t((q[i] & 15) << (s % 2 ? 4 : 0));
      want[i] = double(d) * sc[s] * (q[i] & 15) - double(dmin) * mn[s];
    }
    expect_values(Type::Q4_K, b4, want);

    // Q5_K: the same, plus the fifth bit of value i at bit s of qh[i % 32].
    std::vector<uint8_t> b5(176, 0);
    put_f16(b5.data(), d);
    put_f16(b5.data() + 2, dmin);
    pack_k4_scales(sc, mn, b5.data() + 4);
    for (int i = 0; i < 256; ++i) {
      const int s = i / 32, g = i / 64, l = i % 32;
      b5[48 + 32 * g + l] |= uint8_t((q[i] & 15) << (s % 2 ? 4 : 0));
      b5[16 + l] |= uint8_t((q[i] >> 4) << s);
      want[i] = double(d) * sc[s] * q[i] - double(dmin) * mn[s];
    }
    expect_values(Type::Q5_K, b5, want);
  }
}

TEST(GgmlDequant, Q2KAndQ3KHandPacked) {
  std::mt19937 rng(2);
  for (int rep = 0; rep < 20; ++rep) {
    const float d = rep % 2 ? 0.25f : -0.125f, dmin = 0.5f;
    const std::vector<int> q2 = draw(rng, 256, 0, 3), hbit = draw(rng, 256, 0, 1);
    const std::vector<int> sc = draw(rng, 16, 0, 15), mn = draw(rng, 16, 0, 15), sc6 = draw(rng, 16, -32, 31);
    // 2-bit values: value i lives in qs[32 * (i / 128) + i % 32] at bits 2 * ((i % 128) / 32);
    // its 16-value sub-block is i / 16.
    std::vector<uint8_t> b2(84, 0);
    std::vector<double> want(256);
    for (int s = 0; s < 16; ++s) b2[s] = uint8_t(sc[s] | mn[s] << 4);
    for (int i = 0; i < 256; ++i) {
      b2[16 + 32 * (i / 128) + i % 32] |= uint8_t(q2[i] << (2 * ((i % 128) / 32)));
      want[i] = double(d) * sc[i / 16] * q2[i] - double(dmin) * mn[i / 16];
    }
    put_f16(b2.data() + 80, d);
    put_f16(b2.data() + 82, dmin);
    expect_values(Type::Q2_K, b2, want);

    // Q3_K: the same 2-bit layout in qs (offset 32); bit i / 32 of hmask[i % 32] set means the
    // value is q2, clear means q2 - 4. Scales: 6-bit sc6 + 32; scale s has its low nibble in
    // byte s % 8 (high nibble when s >= 8) and its top two bits in byte 8 + s % 4 at 2 * (s / 4).
    std::vector<uint8_t> b3(110, 0);
    for (int i = 0; i < 256; ++i) {
      b3[32 + 32 * (i / 128) + i % 32] |= uint8_t(q2[i] << (2 * ((i % 128) / 32)));
      b3[i % 32] |= uint8_t(hbit[i] << (i / 32));
      want[i] = double(d) * sc6[i / 16] * (q2[i] - (hbit[i] ? 0 : 4));
    }
    for (int s = 0; s < 16; ++s) {
      const int u = sc6[s] + 32;
      b3[96 + s % 8] |= uint8_t((u & 15) << (s >= 8 ? 4 : 0));
      b3[96 + 8 + s % 4] |= uint8_t((u >> 4) << (2 * (s / 4)));
    }
    put_f16(b3.data() + 108, d);
    expect_values(Type::Q3_K, b3, want);
  }
}

TEST(GgmlDequant, Q6KAndIQ4XSHandPacked) {
  std::mt19937 rng(6);
  for (int rep = 0; rep < 20; ++rep) {
    const float d = rep % 2 ? 0.0078125f : -0.03125f;
    const std::vector<int> q6 = draw(rng, 256, -32, 31), sc = draw(rng, 16, -128, 127);
    // Q6_K value i (half h = i / 128, r = i % 128, quarter k = r / 32, l = r % 32): the 6-bit
    // u = q + 32 has its low nibble in ql[64h + l + 32 (k & 1)] (high nibble when k >= 2) and
    // its top two bits at bits 2k of qh[32h + l]; its 16-value sub-block is i / 16.
    std::vector<uint8_t> b6(210, 0);
    std::vector<double> want(256);
    for (int i = 0; i < 256; ++i) {
      const int h = i / 128, r = i % 128, k = r / 32, l = r % 32, u = q6[i] + 32;
      b6[64 * h + l + 32 * (k & 1)] |= uint8_t((u & 15) << (k >= 2 ? 4 : 0));
      b6[128 + 32 * h + l] |= uint8_t((u >> 4) << (2 * k));
      want[i] = double(d) * sc[i / 16] * q6[i];
    }
    for (int s = 0; s < 16; ++s) b6[192 + s] = uint8_t(int8_t(sc[s]));
    put_f16(b6.data() + 208, d);
    expect_values(Type::Q6_K, b6, want);

    // IQ4_XS: eight 32-value sub-blocks with 6-bit scales ls (stored + 32): low nibble s % 2
    // of scales_l[s / 2], top two bits at 2s of the u16 scales_h. Within a sub-block, value j
    // is the low nibble of qs byte j % 16 (high nibble for j >= 16).
    const std::vector<int> idx = draw(rng, 256, 0, 15), ls = draw(rng, 8, -32, 31);
    std::vector<uint8_t> bx(136, 0);
    put_f16(bx.data(), d);
    uint16_t scales_h = 0;
    for (int s = 0; s < 8; ++s) {
      const int u = ls[s] + 32;
      bx[4 + s / 2] |= uint8_t((u & 15) << (4 * (s % 2)));
      scales_h |= uint16_t((u >> 4) << (2 * s));
    }
    std::memcpy(bx.data() + 2, &scales_h, 2);
    for (int i = 0; i < 256; ++i) {
      const int s = i / 32, j = i % 32;
      bx[8 + 16 * s + j % 16] |= uint8_t(idx[i] << (j >= 16 ? 4 : 0));
      want[i] = double(d) * ls[s] * kLevels[idx[i]];
    }
    expect_values(Type::IQ4_XS, bx, want);
  }
}

TEST(GgmlDequant, PlainTypesAndQ8K) {
  const float f32[3] = {1.5f, -0.0f, 3e-39f};
  const uint16_t f16[3] = {0x3c00, 0x8001, 0x7bff};  // 1, -smallest subnormal, 65504
  const uint16_t bf16[3] = {0x3f80, 0xc0a0, 0x0001};
  const int8_t i8[3] = {-128, 0, 127};
  const int16_t i16[3] = {-32768, 5, 32767};
  const int32_t i32[3] = {-7, 1 << 24, 3};
  const int64_t i64[3] = {-1, int64_t(1) << 40, 9};
  const double f64[3] = {0.1, -2.5, 1e300};
  const std::map<Type, std::pair<const void*, std::vector<double>>> cases = {
      {Type::F32, {f32, {1.5, -0.0, double(3e-39f)}}},
      {Type::F16, {f16, {1.0, -std::ldexp(1.0, -24), 65504.0}}},
      {Type::BF16, {bf16, {1.0, -5.0, std::ldexp(1.0, -133)}}},
      {Type::I8, {i8, {-128, 0, 127}}},
      {Type::I16, {i16, {-32768, 5, 32767}}},
      {Type::I32, {i32, {-7, 16777216, 3}}},
      {Type::I64, {i64, {-1, std::ldexp(1.0, 40), 9}}},
      {Type::F64, {f64, {double(0.1f), -2.5, double(INFINITY)}}},
  };
  for (const auto& [t, c] : cases) {
    float got[3];
    dequantize_row(t, c.first, got, 3);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(double(got[i]), c.second[i]) << type_info(t)->name << " " << i;
      EXPECT_EQ(std::signbit(got[i]), std::signbit(c.second[i])) << type_info(t)->name << " " << i;
    }
  }
  // Q8_K: f32 scale, 256 int8, 16 int16 sums that dequantization ignores.
  std::vector<uint8_t> b(292, 0xee);
  const float d = -0.375f;
  std::memcpy(b.data(), &d, 4);
  std::vector<double> want(256);
  for (int i = 0; i < 256; ++i) {
    b[4 + i] = uint8_t(int8_t(i - 128));
    want[i] = double(d) * (i - 128);
  }
  expect_values(Type::Q8_K, b, want);
}

}  // namespace
}  // namespace fathom::ggml

namespace fathom::ggml {
namespace {

// An empty tensor (its data pointer may be null) dequantizes to nothing, for every type.
TEST(GgmlEmpty, ZeroValuesTouchNothing) {
  for (uint32_t id = 0; id < 64; ++id) {
    const TypeInfo* i = type_info(id);
    if (!i || !i->supported) continue;
    EXPECT_NO_THROW(dequantize_row(Type(id), nullptr, nullptr, 0)) << i->name;
  }
}

}  // namespace
}  // namespace fathom::ggml
