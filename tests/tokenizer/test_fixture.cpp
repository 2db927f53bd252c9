// Golden check against ids and decodes produced by HF tokenizers for DeepSeek-V3.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

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

TEST(TokenizerFixture, ConcurrentEncodesAgree) {
  std::ifstream f(std::string(FATHOM_TEST_DATA) + "/tokenizer-deepseek-v3.jsonl");
  std::vector<std::pair<std::string, std::vector<int32_t>>> recs;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) {
      const auto rec = nlohmann::json::parse(line);
      recs.emplace_back(rec["text"], rec["ids"].get<std::vector<int32_t>>());
    }
  // Fresh tokenizer, so that the threads fill its cache concurrently.
  const Tokenizer tok = Tokenizer::load(std::string(FATHOM_TEST_DATA) + "/tokenizers/deepseek-v3");
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round)
        for (size_t i = 0; i < recs.size(); ++i) {
          const auto& r = recs[(i * 7 + static_cast<size_t>(t) * 13 + static_cast<size_t>(round)) % recs.size()];
          mismatches[t] += tok.encode(r.first) != r.second;
        }
    });
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

}  // namespace
}  // namespace fathom::test
