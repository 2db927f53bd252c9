// Golden check against ids and decodes produced by HF tokenizers for DeepSeek-V3.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "test_util.h"

namespace fathom::test {
namespace {

TEST(TokenizerFixture, DeepSeekV3ExactIdsAndDecode) {
  std::ifstream f(std::string(FATHOM_TEST_DATA) + "/tokenizer-deepseek-v3.jsonl");
  ASSERT_TRUE(f.good());
  std::string line;
  int n = 0, bad = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const auto rec = nlohmann::json::parse(line);
    const std::string text = rec["text"];
    const auto want = rec["ids"].get<std::vector<int32_t>>();
    const std::string decoded = rec["decoded"];
    const auto got = deepseek().encode(text);
    EXPECT_EQ(got, want) << "text: " << nlohmann::json(text).dump();
    EXPECT_EQ(deepseek().decode(want), decoded) << "ids of: " << nlohmann::json(text).dump();
    bad += got != want;
    ++n;
  }
  EXPECT_GT(n, 100);
  EXPECT_EQ(bad, 0) << "of " << n;
}

TEST(TokenizerFixture, DeepSeekV3Config) {
  const Tokenizer& t = deepseek();
  EXPECT_EQ(t.bos_id(), 0);
  EXPECT_EQ(t.eos_id(), 1);
  EXPECT_EQ(t.token_id("<｜end▁of▁sentence｜>"), 1);
  EXPECT_TRUE(t.is_special(0));
  EXPECT_FALSE(t.is_special(19923));
  EXPECT_EQ(t.token_text(19923), "Hello");
  EXPECT_EQ(t.vocab_size(), 128815);
}

}  // namespace
}  // namespace fathom::test
