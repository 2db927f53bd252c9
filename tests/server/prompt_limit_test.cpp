// The bound on a prompt's string read from raw JSON, before the body is parsed.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "server/prompt_limit.h"

using fathom::server::top_level_string_bytes;

namespace {
std::optional<size_t> prompt(const std::string& body) { return top_level_string_bytes(body, "prompt"); }
}  // namespace

TEST(PromptLimit, FindsTheTopLevelString) {
  EXPECT_EQ(prompt(R"({"prompt":"hello"})"), 5u);
  EXPECT_EQ(prompt(R"( { "model" : "x", "prompt" : "hé" , "max_tokens": 3 } )"), 3u);
  EXPECT_EQ(prompt(R"({"a":{"prompt":"nested [\"]"},"b":[1,{"c":"}"}],"prompt":"xy"})"), 2u);
  // Escapes count at least one byte each: a lower bound.
  EXPECT_EQ(prompt(R"({"prompt":"a\n\"\u00e9\ud83d\ude00"})"), 6u);
  // The last of duplicate fields, as the parser keeps.
  EXPECT_EQ(prompt(R"({"prompt":"long text","prompt":"ab"})"), 2u);
  EXPECT_EQ(prompt(R"({"prompt":"long text","prompt":[1,2]})"), std::nullopt);
}

TEST(PromptLimit, NothingForOtherShapesOrMalformedBodies) {
  EXPECT_EQ(prompt(R"({"prompt":[1,2,3]})"), std::nullopt);
  EXPECT_EQ(prompt(R"({"prompt":["text"]})"), std::nullopt);
  EXPECT_EQ(prompt(R"({"messages":[]})"), std::nullopt);
  EXPECT_EQ(prompt(R"({})"), std::nullopt);
  EXPECT_EQ(prompt(R"(["prompt","x"])"), std::nullopt);
  EXPECT_EQ(prompt(R"({"prompt":"unterminated)"), std::nullopt);
  EXPECT_EQ(prompt(R"({"prompt":"x")"), std::nullopt);  // the object does not end
  EXPECT_EQ(prompt(R"({"prompt":"x" "y"})"), std::nullopt);
  EXPECT_EQ(prompt(R"({"prompt":"x\)"), std::nullopt);
  EXPECT_EQ(prompt(""), std::nullopt);
  EXPECT_EQ(prompt(std::string(100000, '[')), std::nullopt);
}
