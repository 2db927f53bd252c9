// Pre-tokenizer semantics. Expected pieces are worked out by hand from HF tokenizers'
// documented rules (Split behaviors, Oniguruma match iteration, GPT-2 regex).
#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"

namespace fathom::test {
namespace {

using V = std::vector<std::string>;

json split(const json& pattern, const char* behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

TEST(PreTokenizer, SplitBehaviorsOnStringPattern) {
  const json dash = {{"String", "-"}};
  const std::string s = "the-final--countdown";
  // These four are the examples in HF's SplitDelimiterBehavior documentation.
  EXPECT_EQ(pieces(split(dash, "Removed"), s), (V{"the", "final", "countdown"}));
  EXPECT_EQ(pieces(split(dash, "Isolated"), s), (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(pieces(split(dash, "MergedWithPrevious"), s), (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(pieces(split(dash, "MergedWithNext"), s), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(pieces(split(dash, "Contiguous"), s), (V{"the", "-", "final", "--", "countdown"}));
}

TEST(PreTokenizer, SplitBehaviorsAtEdges) {
  const json dash = {{"String", "-"}};
  const std::string s = "-a-b--c-";
  EXPECT_EQ(pieces(split(dash, "Removed"), s), (V{"a", "b", "c"}));
  // A leading match has nothing before it to merge into.
  EXPECT_EQ(pieces(split(dash, "MergedWithPrevious"), s), (V{"-", "a-", "b-", "-", "c-"}));
  // A trailing match has nothing after it.
  EXPECT_EQ(pieces(split(dash, "MergedWithNext"), s), (V{"-a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(pieces(split(dash, "Contiguous"), s), (V{"-", "a", "-", "b", "--", "c", "-"}));
}

TEST(PreTokenizer, SplitInvert) {
  const json letters = {{"Regex", "[a-z]+"}};
  const std::string s = "ab, cd!";
  // Removed drops the matches; inverted, the gaps between letter runs are the matches.
  EXPECT_EQ(pieces(split(letters, "Removed", false), s), (V{", ", "!"}));
  EXPECT_EQ(pieces(split(letters, "Removed", true), s), (V{"ab", "cd"}));
  EXPECT_EQ(pieces(split(letters, "Isolated", true), s), (V{"ab", ", ", "cd", "!"}));
  EXPECT_EQ(pieces(split(letters, "MergedWithPrevious", true), s), (V{"ab, ", "cd!"}));
  EXPECT_EQ(pieces(split(letters, "MergedWithNext", true), s), (V{"ab", ", cd", "!"}));
}

TEST(PreTokenizer, StringPatternIsLiteral) {
  // Regex metacharacters in a String pattern match themselves.
  EXPECT_EQ(pieces(split({{"String", "a.b"}}, "Removed"), "xa.bya+b"), (V{"x", "ya+b"}));
  EXPECT_EQ(pieces(split({{"String", " "}}, "Removed"), "a b  c"), (V{"a", "b", "c"}));
}

TEST(PreTokenizer, EmptyMatchesSplitEveryCharacter) {
  // Oniguruma reports an empty match at every position, skipping one right after the
  // previous match; each boundary splits.
  EXPECT_EQ(pieces(split({{"Regex", "x*"}}, "Removed"), "abc"), (V{"a", "b", "c"}));
  EXPECT_EQ(pieces(split({{"Regex", "x*"}}, "Removed"), "axxb"), (V{"a", "b"}));
}

TEST(PreTokenizer, UnicodeWhitespaceAndClasses) {
  const json ws = split({{"Regex", "\\s+"}}, "Removed");
  // Ideographic space, no-break space, NEL and line separator are White_Space.
  EXPECT_EQ(pieces(ws, "a\u3000b\u00a0c\u0085d\u2028e"), (V{"a", "b", "c", "d", "e"}));
  // U+180E (Mongolian vowel separator) is not White_Space in current Unicode.
  EXPECT_EQ(pieces(ws, "a\u180eb"), (V{"a\u180eb"}));
  EXPECT_EQ(pieces(split({{"Regex", "\\p{N}+"}}, "Isolated"), "x١٢3y"), (V{"x", "١٢3", "y"}));
}

TEST(PreTokenizer, Digits) {
  const json contiguous = {{"type", "Digits"}, {"individual_digits", false}};
  const json individual = {{"type", "Digits"}, {"individual_digits", true}};
  EXPECT_EQ(pieces(contiguous, "abc123def4"), (V{"abc", "123", "def", "4"}));
  EXPECT_EQ(pieces(individual, "abc123def4"), (V{"abc", "1", "2", "3", "def", "4"}));
  // Numeric means general category N*: Arabic-Indic digits and vulgar fractions count.
  EXPECT_EQ(pieces(individual, "x٣½y"), (V{"x", "٣", "½", "y"}));
  EXPECT_EQ(pieces(contiguous, "x٣½y"), (V{"x", "٣½", "y"}));
}

TEST(PreTokenizer, ByteLevelWithGpt2Regex) {
  const json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  // The prefix space joins the first word; of a run of spaces before a word, the last one
  // stays with the word.
  EXPECT_EQ(pieces(bl, "Hello world's  x"), (V{"ĠHello", "Ġworld", "'s", "Ġ", "Ġx"}));
  // The prefix is added unless the text starts with a literal space.
  EXPECT_EQ(pieces(bl, "\ta"), (V{"Ġ", "ĉ", "a"}));
  EXPECT_EQ(pieces(bl, " a"), (V{"Ġa"}));
  const json plain = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}};
  EXPECT_EQ(pieces(plain, "a b\n"), (V{"aĠbĊ"}));
  EXPECT_EQ(pieces(plain, "é"), (V{"Ã©"}));
}

const char* kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

TEST(PreTokenizer, Llama3Pattern) {
  const json spec = {{"type", "Sequence"},
                     {"pretokenizers", {split({{"Regex", kLlama3Pattern}}, "Isolated"), byte_level_step()}}};
  EXPECT_EQ(pieces(spec, "I'M 12345 ok\n\n  x"),
            (V{"I", "'M", "Ġ", "123", "45", "Ġok", "ĊĊ", "Ġ", "Ġx"}));
  EXPECT_EQ(pieces(spec, "foo(bar);\n}"), (V{"foo", "(bar", ");Ċ", "}"}));
}

TEST(PreTokenizer, Qwen2Pattern) {
  const json spec = {{"type", "Sequence"},
                     {"pretokenizers", {split({{"Regex", kQwen2Pattern}}, "Isolated"), byte_level_step()}}};
  EXPECT_EQ(pieces(spec, "we'LL pay 123"), (V{"we", "'LL", "Ġpay", "Ġ", "1", "2", "3"}));
}

TEST(PreTokenizer, RejectsUnknownSpecs) {
  EXPECT_THROW(PreTokenizer(json{{"type", "Whatever"}}), Error);
  EXPECT_THROW(PreTokenizer(split({{"Regex", "("}}, "Isolated")), Error);
  EXPECT_THROW(PreTokenizer(split({{"Regex", "a"}}, "Sideways")), Error);
}

}  // namespace
}  // namespace fathom::test
