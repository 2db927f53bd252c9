// Qwen2- and Llama-3-style tokenizer.json documents: their real normalizer and
// pre-tokenizer configurations over a tiny byte-level vocabulary.
#include <gtest/gtest.h>

#include "test_util.h"

namespace fathom::test {
namespace {

using Ids = std::vector<int32_t>;

const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

json pre_tokenizer(const char* pattern) {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
            byte_level_step()}}};
}

// Extra tokens: 256 "Ġo", 257 "Ġok", 258 "12", 259 "123", 260 "Ġxyz".
const std::vector<std::string> kExtra = {"Ġo", "Ġok", "12", "123", "Ġxyz"};
const json kMerges = {"Ġ o", "Ġo k", "1 2", "12 3"};

Tokenizer llama3(bool ignore_merges = true) {
  const json added = {added_token(300, "<|begin_of_text|>", true), added_token(301, "<|eot_id|>", true)};
  return Tokenizer::from_json(
      doc(nullptr, pre_tokenizer(kLlama3Pattern), byte_level_model(kExtra, kMerges, ignore_merges), added).dump());
}

Tokenizer qwen2() {
  const json added = {added_token(300, "<|endoftext|>", true), added_token(301, "<|im_start|>", true),
                      added_token(302, "<|im_end|>", true)};
  const json nfc = {{"type", "NFC"}};
  return Tokenizer::from_json(
      doc(nfc, pre_tokenizer(kQwen2Pattern), byte_level_model(kExtra, kMerges, false), added).dump());
}

TEST(Llama3Style, SpecialsMergesAndDigitGroups) {
  const Tokenizer t = llama3();
  EXPECT_EQ(t.encode("<|begin_of_text|> ok<|eot_id|>"), (Ids{300, 257, 301}));
  // Digits go in groups of three: "1234" -> "123" "4".
  EXPECT_EQ(t.encode("1234"), (Ids{259, '4'}));
  // ignore_merges: " xyz" is one vocab token although no merge builds it.
  EXPECT_EQ(t.encode(" xyz"), (Ids{260}));
  EXPECT_EQ(llama3(false).encode(" xyz"), (Ids{' ', 'x', 'y', 'z'}));
  EXPECT_EQ(t.decode(t.encode("<|begin_of_text|> ok 1234 xyz")), "<|begin_of_text|> ok 1234 xyz");
  EXPECT_EQ(t.decode(t.encode("<|begin_of_text|> ok"), true), " ok");
}

TEST(Qwen2Style, NfcAndSingleDigits) {
  const Tokenizer t = qwen2();
  // Each digit is its own pre-token, so "12" never merges.
  EXPECT_EQ(t.encode("123"), (Ids{'1', '2', '3'}));
  // NFC runs before pre-tokenization: e + U+0301 becomes é (C3 A9).
  EXPECT_EQ(t.encode("e\xCC\x81"), (Ids{0xC3, 0xA9}));
  EXPECT_EQ(t.encode("<|im_start|>user ok<|im_end|>"), (Ids{301, 'u', 's', 'e', 'r', 257, 302}));
  // A special token is matched on the raw text, before NFC.
  EXPECT_EQ(t.encode("<|endoftext|>"), (Ids{300}));
}

}  // namespace
}  // namespace fathom::test
