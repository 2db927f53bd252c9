// The GGUF parser on hand-built buffers: a valid file reads back exactly, and each class of bad
// input gives a clear fathom::Error naming the file (and key or tensor), never a crash (these
// also run under ASan/UBSan).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "core/error.h"
#include "io/gguf.h"
#include "io/gguf_dequantize.h"
#include "io/safetensors.h"
#include "gguf_builder.h"

namespace fathom {
namespace {
namespace fs = std::filesystem;
using test::GgufBytes;
using namespace test;

// Two tensors: "a" F32 ne {4, 2} = 0..7 at offset 0, "b" Q8_0 ne {32} (d = 0.5, q = k - 16) at 32.
GgufBytes valid_file(uint32_t version = 3) {
  GgufBytes g;
  g.header(2, 8, version);
  g.key("general.architecture", kString).str("llama");
  g.key("general.alignment", kU32).u32(32);
  g.key("k.u8", kU8).u8(200);
  g.key("k.i16", kI16).u16(uint16_t(-300));
  g.key("k.f64", kF64).f64(0.25);
  g.key("k.bool", kBool).u8(1);
  g.key("k.strs", kArray).u32(kString).u64(3).str("a").str("").str("ccc");
  g.key("k.i32s", kArray).u32(kI32).u64(3).u32(uint32_t(-1)).u32(7).u32(0x7fffffff);
  g.tensor("a", {4, 2}, kGgmlF32, 0);
  g.tensor("b", {32}, kGgmlQ8_0, 32);
  g.pad();
  for (int k = 0; k < 8; ++k) g.f32(float(k));
  g.pad();
  g.u16(0x3800);  // f16 0.5
  for (int k = 0; k < 32; ++k) g.u8(uint8_t(int8_t(k - 16)));
  return g;
}

std::string error_of(const GgufBytes& g) {
  try {
    parse_gguf(g.data(), g.size(), "t.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(g, text)                                              \
  do {                                                                     \
    const std::string e_ = error_of(g);                                    \
    EXPECT_NE(e_.find(text), std::string::npos) << "error: '" << e_ << "'"; \
    EXPECT_NE(e_.find("t.gguf"), std::string::npos) << e_;                 \
  } while (0)

TEST(GgufParse, ReadsAValidFile) {
  for (uint32_t version : {2u, 3u}) {
    const GgufBytes g = valid_file(version);
    const GgufHeader h = parse_gguf(g.data(), g.size(), "t.gguf");
    EXPECT_EQ(h.version, version);
    EXPECT_EQ(h.alignment, 32u);
    EXPECT_EQ(h.data_start % 32, 0u);
    const GgufMetadata& m = h.metadata;
    EXPECT_EQ(m.all().size(), 8u);
    EXPECT_EQ(m.get_str("general.architecture"), "llama");
    EXPECT_EQ(m.get_u32("k.u8"), 200u);
    EXPECT_EQ(m.get_i64("k.i16"), -300);
    EXPECT_EQ(m.get_f64("k.f64"), 0.25);
    EXPECT_EQ(m.get_f32("k.f64"), 0.25f);
    EXPECT_TRUE(m.get_bool("k.bool"));
    EXPECT_EQ(m.get_array_str("k.strs"), (std::vector<std::string_view>{"a", "", "ccc"}));
    EXPECT_EQ(m.get_array_i64("k.i32s"), (std::vector<int64_t>{-1, 7, 0x7fffffff}));
    EXPECT_EQ(m.get_u32("absent", 9u), 9u);
    EXPECT_EQ(m.get_str("absent", "x"), "x");

    ASSERT_EQ(h.tensors.size(), 2u);
    const GgufTensor& a = h.tensors[0];
    EXPECT_EQ(a.name, "a");
    EXPECT_EQ(a.ne, (std::vector<int64_t>{4, 2}));
    EXPECT_EQ(a.shape(), (std::vector<int64_t>{2, 4}));
    EXPECT_EQ(a.nbytes, 32u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data), h.data_start);
    const GgufTensor& b = h.tensors[1];
    EXPECT_EQ(std::string(b.type_name()), "Q8_0");
    EXPECT_EQ(b.nbytes, 34u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data), h.data_start + 32);

    float out[32];
    gguf_dequantize(a.type, g.data() + reinterpret_cast<uintptr_t>(a.data), out, 8);
    for (int k = 0; k < 8; ++k) EXPECT_EQ(out[k], float(k));
    gguf_dequantize(b.type, g.data() + reinterpret_cast<uintptr_t>(b.data), out, 32);
    for (int k = 0; k < 32; ++k) EXPECT_EQ(out[k], 0.5f * float(k - 16));
  }
}

TEST(GgufParse, AccessorErrorsNameKeyAndTypes) {
  const GgufBytes g = valid_file();
  const GgufMetadata& m = parse_gguf(g.data(), g.size(), "t.gguf").metadata;
  auto err = [&](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  std::string e = err([&] { m.get_u32("k.i16"); });  // negative: no uint32
  EXPECT_NE(e.find("'k.i16' is int16 -300, expected a uint32"), std::string::npos) << e;
  e = err([&] { m.get_str("k.u8"); });
  EXPECT_NE(e.find("'k.u8' is uint8 200, expected a string"), std::string::npos) << e;
  e = err([&] { m.get_f32("k.bool"); });
  EXPECT_NE(e.find("expected a float"), std::string::npos) << e;
  e = err([&] { m.get_array_f32("k.strs"); });
  EXPECT_NE(e.find("expected an array of floats"), std::string::npos) << e;
  e = err([&] { m.get_u32("nope"); });
  EXPECT_NE(e.find("t.gguf: metadata key 'nope' is missing"), std::string::npos) << e;
  e = err([&] { m.get_bool("k.u8", false); });  // present, wrong type: no fallback
  EXPECT_NE(e.find("expected a bool"), std::string::npos) << e;
}

TEST(GgufParse, EveryTruncationIsAnError) {
  const GgufBytes g = valid_file();
  for (size_t n = 0; n < g.size(); ++n) {
    GgufBytes cut;
    cut.b = g.b.substr(0, n);
    const std::string e = error_of(cut);
    EXPECT_NE(e.find("t.gguf"), std::string::npos) << "prefix of " << n << " bytes: '" << e << "'";
  }
  GgufBytes cut;
  cut.b = g.b.substr(0, 150);  // inside the key/values
  const std::string e = error_of(cut);
  EXPECT_TRUE(e.find("truncated") != std::string::npos || e.find("past the end") != std::string::npos) << e;
  cut.b = g.b.substr(0, g.size() - 1);  // the last tensor's data cut short
  EXPECT_ERROR(cut, "tensor 'b': bytes [32, 66) of the data section are out of range");
}

TEST(GgufParse, BadMagicOrVersion) {
  GgufBytes g = valid_file();
  g.b[0] = 'X';
  EXPECT_ERROR(g, "not a GGUF file");
  EXPECT_ERROR(valid_file(1), "version 1 is not supported");
  EXPECT_ERROR(valid_file(0x03000000), "big-endian");
}

TEST(GgufParse, LyingCounts) {
  GgufBytes g;
  g.header(0, uint64_t(1) << 40);
  EXPECT_ERROR(g, "metadata count");
  GgufBytes t;
  t.header(uint64_t(1) << 60, 0);
  EXPECT_ERROR(t, "tensor count");
  GgufBytes a;
  a.header(0, 1).key("arr", kArray).u32(kU32).u64(uint64_t(1) << 61).u32(1);
  EXPECT_ERROR(a, "cannot fit");
  GgufBytes s;
  s.header(0, 1).key("arr", kArray).u32(kString).u64(1000).str("x");
  EXPECT_ERROR(s, "cannot fit");
}

TEST(GgufParse, StringLengthPastTheEnd) {
  GgufBytes g;
  g.header(0, 1).key("s", kString).u64(1000).raw("abc");
  EXPECT_ERROR(g, "string length 1000 runs past the end");
  GgufBytes k;
  k.header(0, 1).u64(UINT64_MAX).raw("key" + std::string(16, ' '));
  EXPECT_ERROR(k, "runs past the end");
  GgufBytes n;
  n.header(1, 0).u64(uint64_t(1) << 62).raw(std::string(30, ' '));
  EXPECT_ERROR(n, "runs past the end");
}

TEST(GgufParse, BadValues) {
  GgufBytes g;
  g.header(0, 1).key("x", 13).u32(0);
  EXPECT_ERROR(g, "unknown GGUF value type 13");
  GgufBytes nested;
  nested.header(0, 1).key("x", kArray).u32(kArray).u64(0);
  EXPECT_ERROR(nested, "nested arrays");
  GgufBytes b;
  b.header(0, 1).key("flag", kBool).u8(2);
  EXPECT_ERROR(b, "'flag': bool value 2");
  GgufBytes dup;
  dup.header(0, 2).key("x", kU8).u8(1).key("x", kU8).u8(1);
  EXPECT_ERROR(dup, "'x' appears twice");
  GgufBytes al;
  al.header(0, 1).key("general.alignment", kU32).u32(24);
  EXPECT_ERROR(al, "power of two");
}

// One tensor `t` with the given dims, type and offset, and `data` bytes of data.
GgufBytes one_tensor(const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset, size_t data) {
  GgufBytes g;
  g.header(1, 0).tensor("t", ne, type, offset).pad();
  g.b.append(data, '\0');
  return g;
}

TEST(GgufParse, BadTensorInfos) {
  EXPECT_EQ(error_of(one_tensor({4}, kGgmlF32, 0, 16)), "");
  EXPECT_ERROR(one_tensor({4}, 4, 0, 16), "tensor 't': unknown GGML type id 4");
  EXPECT_ERROR(one_tensor({4}, 99, 0, 16), "unknown GGML type id 99");
  EXPECT_ERROR(one_tensor({1, 1, 1, 1, 1}, kGgmlF32, 0, 4), "5 dims");
  EXPECT_ERROR(one_tensor({uint64_t(1) << 32, uint64_t(1) << 32}, kGgmlF32, 0, 16), "overflows");
  EXPECT_ERROR(one_tensor({uint64_t(1) << 62}, kGgmlF32, 0, 16), "more bytes than the file");
  EXPECT_ERROR(one_tensor({48, 2}, kGgmlQ8_0, 0, 200), "row length 48 is not a multiple of Q8_0's block of 32");
  EXPECT_ERROR(one_tensor({4}, kGgmlF32, 8, 64), "not aligned to 32");
  EXPECT_ERROR(one_tensor({4}, kGgmlF32, 32, 40), "out of range");
  EXPECT_ERROR(one_tensor({4}, kGgmlF32, 0, 12), "out of range");
  EXPECT_ERROR(one_tensor({4}, kGgmlF32, uint64_t(-32), 16), "out of range");
}

TEST(GgufParse, OverlapAndDuplicateNames) {
  GgufBytes o;
  o.header(2, 0).tensor("x", {16}, kGgmlF32, 0).tensor("y", {16}, kGgmlF32, 32).pad();
  o.b.append(96, '\0');
  EXPECT_ERROR(o, "tensors 'x' and 'y' overlap");
  GgufBytes d;
  d.header(2, 0).tensor("x", {4}, kGgmlF32, 0).tensor("x", {4}, kGgmlF32, 32).pad();
  d.b.append(64, '\0');
  EXPECT_ERROR(d, "tensor 'x' appears twice");
}

TEST(GgufParse, HonoursACustomAlignment) {
  GgufBytes g;
  g.header(2, 1).key("general.alignment", kU32).u32(64);
  g.tensor("x", {4}, kGgmlF32, 0).tensor("y", {4}, kGgmlF32, 64).pad(64);
  g.b.append(80, '\0');
  const GgufHeader h = parse_gguf(g.data(), g.size(), "t.gguf");
  EXPECT_EQ(h.alignment, 64u);
  EXPECT_EQ(h.data_start % 64, 0u);
  GgufBytes mis;
  mis.header(1, 1).key("general.alignment", kU32).u32(64).tensor("x", {4}, kGgmlF32, 32).pad(64);
  mis.b.append(64, '\0');
  EXPECT_ERROR(mis, "not aligned to 64");
}

// ---- files: split sets and `dequantize` refusing what it cannot do ----

struct TempDir {
  fs::path p = fs::temp_directory_path() / ("fathom-gguf-" + std::to_string(::getpid()) + "-" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
  TempDir() { fs::create_directories(p); }
  ~TempDir() { fs::remove_all(p); }
};

void write(const fs::path& p, const GgufBytes& g) { std::ofstream(p, std::ios::binary) << g.b; }

// Shard `no` (1-based) of `count`, holding one F32 tensor "tN" with value N.
GgufBytes shard(int no, int count, int total_tensors) {
  GgufBytes g;
  g.header(1, no == 1 ? 4 : 3);
  if (no == 1) g.key("general.architecture", kString).str("llama");
  g.key("split.no", kU16).u16(uint16_t(no - 1));
  g.key("split.count", kU16).u16(uint16_t(count));
  g.key("split.tensors.count", kI32).u32(uint32_t(total_tensors));
  g.tensor("t" + std::to_string(no), {1}, kGgmlF32, 0).pad();
  return g.f32(float(no));
}

TEST(GgufSplit, OpensEveryShardFromAnyOfThem) {
  TempDir d;
  for (int k = 1; k <= 3; ++k) write(d.p / fmt::format("m-{:05d}-of-00003.gguf", k), shard(k, 3, 3));
  for (int k = 1; k <= 3; ++k) {
    const GgufModel m = GgufModel::open((d.p / fmt::format("m-{:05d}-of-00003.gguf", k)).string());
    ASSERT_EQ(m.tensors().size(), 3u);
    EXPECT_EQ(m.files().size(), 3u);
    EXPECT_EQ(m.architecture(), "llama");  // the first shard's metadata
    for (int t = 1; t <= 3; ++t) {
      const GgufTensor& x = m.get("t" + std::to_string(t));
      EXPECT_EQ(x.shard, t - 1);
      float v;
      gguf_dequantize(x.type, x.data, &v, 1);
      EXPECT_EQ(v, float(t));
    }
  }
}

std::string open_error(const fs::path& p) {
  try {
    GgufModel::open(p.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GgufSplit, MissingOrInconsistentShards) {
  TempDir d;
  write(d.p / "m-00001-of-00003.gguf", shard(1, 3, 3));
  write(d.p / "m-00003-of-00003.gguf", shard(3, 3, 3));
  std::string e = open_error(d.p / "m-00001-of-00003.gguf");
  EXPECT_NE(e.find("shard 2 of 3 is missing"), std::string::npos) << e;
  EXPECT_NE(e.find("m-00002-of-00003.gguf"), std::string::npos) << e;

  write(d.p / "m-00002-of-00003.gguf", shard(3, 3, 3));  // holds the third shard's split.no
  e = open_error(d.p / "m-00001-of-00003.gguf");
  EXPECT_NE(e.find("split.no 2"), std::string::npos) << e;

  write(d.p / "m-00002-of-00003.gguf", shard(2, 3, 4));  // later shards' counts are not read
  write(d.p / "m-00001-of-00003.gguf", shard(1, 3, 4));
  e = open_error(d.p / "m-00001-of-00003.gguf");
  EXPECT_NE(e.find("split.tensors.count is 4, but the 3 shards hold 3"), std::string::npos) << e;

  write(d.p / "renamed.gguf", shard(1, 3, 3));
  e = open_error(d.p / "renamed.gguf");
  EXPECT_NE(e.find("cannot be found"), std::string::npos) << e;

  GgufBytes dup = shard(1, 2, 2);
  write(d.p / "n-00001-of-00002.gguf", dup);
  write(d.p / "n-00002-of-00002.gguf", shard(1, 2, 2));  // "t1" again, and split.no 0
  e = open_error(d.p / "n-00001-of-00002.gguf");
  EXPECT_NE(e.find("split.no 0"), std::string::npos) << e;
}

TEST(GgufSplit, ParsesSplitNames) {
  const auto s = parse_gguf_split_name("/a/b/x-y-00002-of-00010.gguf");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->prefix, "/a/b/x-y");
  EXPECT_EQ(s->no, 2);
  EXPECT_EQ(s->count, 10);
  EXPECT_EQ(gguf_split_path(s->prefix, 3, 10), "/a/b/x-y-00003-of-00010.gguf");
  EXPECT_FALSE(parse_gguf_split_name("x-00003-of-00002.gguf"));
  EXPECT_FALSE(parse_gguf_split_name("x-0001-of-0002.gguf"));
  EXPECT_FALSE(parse_gguf_split_name("x.gguf"));
}

TEST(GgufDequantizeFile, RefusesUnsupportedTypesWithoutWriting) {
  TempDir d;
  // Q8_1 (id 9, 36 bytes per 32 values) is an activation format: ggml has no row converter.
  write(d.p / "q81.gguf", one_tensor({32}, 9, 0, 36));
  ASSERT_FALSE(gguf_type_layout(9)->supported);
  try {
    dequantize_gguf({(d.p / "q81.gguf").string(), (d.p / "out").string()});
    ADD_FAILURE() << "accepted Q8_1";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 't'"), std::string::npos) << e.what();
    EXPECT_FALSE(fs::exists(d.p / "out" / "model.safetensors"));
  }
}

TEST(GgufDequantizeFile, WritesNumpyShapesAndRefusesToOverwrite) {
  TempDir d;
  write(d.p / "v.gguf", valid_file());
  const GgufDequantizeResult r = dequantize_gguf({(d.p / "v.gguf").string(), (d.p / "out").string()});
  EXPECT_EQ(r.tensors, 2);
  const TensorStore st = TensorStore::open((d.p / "out" / "model.safetensors").string());
  const TensorView& a = st.get("a");
  EXPECT_EQ(a.dtype, DType::F32);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 4}));
  for (int k = 0; k < 8; ++k) EXPECT_EQ(static_cast<const float*>(a.data)[k], float(k));
  const TensorView& b = st.get("b");
  EXPECT_EQ(b.shape, (std::vector<int64_t>{32}));
  for (int k = 0; k < 32; ++k) EXPECT_EQ(static_cast<const float*>(b.data)[k], 0.5f * float(k - 16));
  EXPECT_THROW(dequantize_gguf({(d.p / "v.gguf").string(), (d.p / "out").string()}), Error);
}

}  // namespace
}  // namespace fathom
