// The DeepSeek-V3 chat template against reference renderings (text and token ids).
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {

const std::string kData = FATHOM_TEST_DATA;
const std::string kModel = kData + "/tokenizers/deepseek-v3";

std::vector<nlohmann::ordered_json> read_jsonl(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  std::vector<nlohmann::ordered_json> out;
  std::string line;
  while (std::getline(f, line))
    if (!line.empty()) out.push_back(nlohmann::ordered_json::parse(line));
  return out;
}

TEST(ChatFixture, DeepSeekV3TextExact) {
  auto tmpl = fathom::ChatTemplate::load(kModel);
  auto cases = read_jsonl(kData + "/chat-deepseek-v3.jsonl");
  ASSERT_FALSE(cases.empty());
  for (const auto& c : cases) {
    nlohmann::ordered_json extra = nlohmann::ordered_json::object();
    for (auto it = c.begin(); it != c.end(); ++it)
      if (it.key() != "name" && it.key() != "messages" && it.key() != "add_generation_prompt" && it.key() != "text" &&
          it.key() != "ids")
        extra[it.key()] = it.value();
    std::string text = tmpl.render(c["messages"], c["add_generation_prompt"].get<bool>(), extra);
    EXPECT_EQ(text, c["text"].get<std::string>()) << c["name"];
  }
}

TEST(ChatFixture, DeepSeekV3IdsExact) {
  auto tmpl = fathom::ChatTemplate::load(kModel);
  auto tok = fathom::Tokenizer::load(kModel);
  for (const auto& c : read_jsonl(kData + "/chat-deepseek-v3.jsonl")) {
    std::string text = tmpl.render(c["messages"], c["add_generation_prompt"].get<bool>(), nlohmann::ordered_json::object());
    auto ids = tok.encode(text);
    std::vector<int32_t> want = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids, want) << c["name"];
  }
}

TEST(ChatFixture, LoadReadsSpecialTokensFromAddedTokenObjects) {
  auto tmpl = fathom::ChatTemplate::load(kModel);
  EXPECT_EQ(tmpl.bos_token(), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(tmpl.eos_token(), "<｜end▁of▁sentence｜>");
}

}  // namespace
