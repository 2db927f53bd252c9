// fathom logits --mtp and fathom generate --speculative mtp from the command line, on the MTP
// fixture: mtp_logits match the reference in both MLA modes, and speculative ids are plain ids.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "io/safetensors.h"

namespace fathom {
namespace {

const std::string kFixture = std::string(FATHOM_TEST_DATA) + "/fixtures/tiny-deepseek-v3-mtp";

std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  ::pclose(p);
  return out;
}

std::string ids_arg(const TensorView& t) {
  std::string s;
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t x;
    std::memcpy(&x, static_cast<const uint8_t*>(t.data) + 8 * i, 8);
    s += (i ? "," : "") + std::to_string(x);
  }
  return s;
}

TEST(SpeculativeCli, LogitsMtpMatchesReference) {
  TensorStore golden = TensorStore::open(kFixture + "/golden.safetensors");
  const std::string ids = ids_arg(golden.get("input_ids.0"));
  const TensorView want = golden.get("mtp_logits.0");
  for (const char* attn : {"absorbed", "naive"}) {
    const std::string out =
        (std::filesystem::temp_directory_path() / ("fathom-mtp-" + std::to_string(::getpid()) + ".safetensors")).string();
    sh(std::string(FATHOM_BINARY) + " logits --model " + kFixture + " --ids " + ids + " --out " + out + " --attn " +
       attn + " --mtp --threads 1");
    TensorStore got = TensorStore::open(out);
    const TensorView g = got.get("mtp_logits");
    ASSERT_EQ(g.shape, want.shape) << attn;
    const auto* a = static_cast<const float*>(g.data);
    const auto* b = static_cast<const float*>(want.data);
    float m = 0;
    for (int64_t i = 0; i < want.numel(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    EXPECT_LT(m, 1e-3f) << attn;
    EXPECT_TRUE(got.find("logits"));
    std::filesystem::remove(out);
  }
}

TEST(SpeculativeCli, GenerateSpeculativePrintsPlainIds) {
  const std::string base = std::string(FATHOM_BINARY) + " generate --model " + kFixture + " --ids 5,9,100,7 -n 30 --threads 1";
  const std::string plain = sh(base);
  ASSERT_FALSE(plain.empty());
  for (const char* k : {"1", "3"}) EXPECT_EQ(sh(base + " --speculative mtp --draft " + k), plain) << k;
  // A model without an MTP module says so.
  const std::string err = sh(std::string(FATHOM_BINARY) + " generate --model " + std::string(FATHOM_TEST_DATA) +
                             "/fixtures/tiny-deepseek-v3 --ids 1,2 --speculative mtp 2>&1");
  EXPECT_NE(err.find("multi-token prediction"), std::string::npos) << err;
}

}  // namespace
}  // namespace fathom
