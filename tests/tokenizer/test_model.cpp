// BPE merges, ignore_merges, added tokens and normalizers on small hand-written documents.
// Expected ids follow from HF's rules: lowest merge rank first (leftmost on ties), added
// tokens matched leftmost-longest before normalization and pre-tokenization.
#include <gtest/gtest.h>

#include "core/error.h"
#include "test_util.h"

namespace fathom::test {
namespace {

using Ids = std::vector<int32_t>;

// A character-level model (no pre-tokenizer, no byte mapping).
json char_model(const std::vector<std::string>& vocab, const json& merges, bool ignore_merges = false,
                json unk = nullptr, bool fuse_unk = false) {
  json v = json::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = static_cast<int>(i);
  return {{"type", "BPE"}, {"unk_token", unk}, {"fuse_unk", fuse_unk}, {"ignore_merges", ignore_merges},
          {"vocab", v}, {"merges", merges}};
}

Tokenizer make(const json& d) { return Tokenizer::from_json(d.dump()); }

TEST(Bpe, MergesByRankInBothEncodings) {
  const std::vector<std::string> v = {"a", "b", "c", "ab", "bc", "abc"};
  // (a,b) merges first, then (ab,c).
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, {"a b", "ab c"}))).encode("abc"), (Ids{5}));
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, json::array({json::array({"a", "b"}), json::array({"ab", "c"})})))).encode("abc"), (Ids{5}));
  // (b,c) has the lower rank, and nothing merges a with bc.
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, {"b c", "a b", "ab c"}))).encode("abc"), (Ids{0, 4}));
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, json::array({json::array({"b", "c"}), json::array({"a", "b"}), json::array({"ab", "c"})})))).encode("abc"),
            (Ids{0, 4}));
  // No merges at all: characters.
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, json::array()))).encode("cab"), (Ids{2, 0, 1}));
}

TEST(Bpe, EqualRanksMergeLeftmostFirst) {
  const std::vector<std::string> v = {"a", "aa"};
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, {"a a"}))).encode("aaa"), (Ids{1, 0}));
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, {"a a"}))).encode("aaaa"), (Ids{1, 1}));
}

TEST(Bpe, IgnoreMerges) {
  // "abc" is in the vocab but no merge path reaches it.
  const std::vector<std::string> v = {"a", "b", "c", "ab", "abc"};
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, {"a b"}, false))).encode("abc"), (Ids{3, 2}));
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, {"a b"}, true))).encode("abc"), (Ids{4}));
  // Byte-level: the whole pre-token " xyz" (Ġxyz) is taken from the vocab.
  const json m_on = byte_level_model({"Ġxyz"}, json::array(), true);
  const json m_off = byte_level_model({"Ġxyz"}, json::array(), false);
  EXPECT_EQ(make(doc(nullptr, byte_level_step(), m_on)).encode(" xyz"), (Ids{256}));
  EXPECT_EQ(make(doc(nullptr, byte_level_step(), m_off)).encode(" xyz"), (Ids{0x20, 0x78, 0x79, 0x7A}));
}

TEST(Bpe, ByteLevelIdsOfRawBytes) {
  const json m = byte_level_model({}, json::array(), false);
  const Tokenizer t = make(doc(nullptr, byte_level_step(), m));
  // With ids 0..255 standing for bytes 0..255, the ids are the UTF-8 bytes.
  EXPECT_EQ(t.encode("a é\n"), (Ids{0x61, 0x20, 0xC3, 0xA9, 0x0A}));
  EXPECT_EQ(t.encode(" xyz"), (Ids{0x20, 0x78, 0x79, 0x7A}));
}

TEST(Bpe, UnknownCharacters) {
  const std::vector<std::string> v = {"a", "<unk>"};
  EXPECT_THROW(make(doc(nullptr, nullptr, char_model(v, json::array()))).encode("ab"), Error);
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, json::array(), false, "<unk>"))).encode("abb"), (Ids{0, 1, 1}));
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(v, json::array(), false, "<unk>", true))).encode("abba"),
            (Ids{0, 1, 0}));
}

TEST(Bpe, BadDocuments) {
  EXPECT_THROW(Tokenizer::from_json("{"), Error);
  EXPECT_THROW(Tokenizer::from_json("[]"), Error);
  EXPECT_THROW(Tokenizer::from_json(R"({"model": {"type": "WordPiece", "vocab": {}}})"), Error);
  // A merge whose result is not in the vocab.
  EXPECT_THROW(make(doc(nullptr, nullptr, char_model({"a", "b"}, {"a b"}))), Error);
  EXPECT_THROW(make(doc(nullptr, nullptr, char_model({"a", "b", "ab"}, {"a  b"}))), Error);
  EXPECT_THROW(make(doc(nullptr, nullptr, char_model({"a"}, json::array({json::array({1, 2})})))), Error);
}

// Added tokens: ids 10.. on top of a character vocab.
const std::vector<std::string> kChars = {"a", "b", " ", "h", "i", "g", "e", "é", "\xCC\x81"};

TEST(AddedTokens, LongestMatchFirst) {
  const json added = {added_token(10, "<s>", true), added_token(11, "<s><t>", true), added_token(12, "<t>", true)};
  const Tokenizer t = make(doc(nullptr, nullptr, char_model(kChars, json::array()), added));
  EXPECT_EQ(t.encode("a<s>b"), (Ids{0, 10, 1}));
  EXPECT_EQ(t.encode("<s><t>a"), (Ids{11, 0}));
  EXPECT_EQ(t.encode("<t><s>"), (Ids{12, 10}));
  EXPECT_TRUE(t.is_special(11));
  EXPECT_FALSE(t.is_special(0));
  EXPECT_EQ(t.token_id("<s><t>"), 11);
}

TEST(AddedTokens, StripAndSingleWord) {
  const json added = {added_token(10, "<m>", true, false, true, false), added_token(11, "<r>", true, false, false, true),
                      added_token(12, "hi", false, false, false, false, true)};
  const Tokenizer t = make(doc(nullptr, nullptr, char_model(kChars, json::array()), added));
  EXPECT_EQ(t.encode("a  <m>b"), (Ids{0, 10, 1}));     // lstrip eats the spaces before
  EXPECT_EQ(t.encode("a <r>  b"), (Ids{0, 2, 11, 1}));  // rstrip only those after
  EXPECT_EQ(t.encode("hi a"), (Ids{12, 2, 0}));
  EXPECT_EQ(t.encode("high"), (Ids{3, 4, 5, 3}));  // "hi" inside a word does not match
  EXPECT_EQ(t.encode("ahi"), (Ids{0, 3, 4}));
  // Without the flags the spaces stay.
  const json plain = {added_token(10, "<m>", true)};
  EXPECT_EQ(make(doc(nullptr, nullptr, char_model(kChars, json::array()), plain)).encode("a  <m>b"),
            (Ids{0, 2, 2, 10, 1}));
}

TEST(AddedTokens, NormalizedTokensMatchAfterNormalization) {
  const json nfc = {{"type", "NFC"}};
  const std::string decomposed = "e\xCC\x81";  // e + combining acute
  // normalized=true: matched against the NFC text, so the decomposed input hits it.
  const Tokenizer yes = make(doc(nfc, nullptr, char_model(kChars, json::array()), {added_token(10, "é", false, true)}));
  EXPECT_EQ(yes.encode("a" + decomposed), (Ids{0, 10}));
  // normalized=false: matched against the raw text only; the NFC text then goes to BPE.
  const Tokenizer no = make(doc(nfc, nullptr, char_model(kChars, json::array()), {added_token(10, "é", false, false)}));
  EXPECT_EQ(no.encode("a" + decomposed), (Ids{0, 7}));
  EXPECT_EQ(no.encode("aé"), (Ids{0, 10}));
}

TEST(Normalizer, NfcComposes) {
  const json nfc = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  const Tokenizer t = make(doc(nfc, byte_level_step(), byte_level_model({}, json::array(), false)));
  EXPECT_EQ(t.encode("e\xCC\x81"), (Ids{0xC3, 0xA9}));                    // é
  EXPECT_EQ(t.encode("\xE1\x84\x80\xE1\x85\xA1"), (Ids{0xEA, 0xB0, 0x80}));  // ᄀ+ᅡ -> 가 U+AC00
  EXPECT_EQ(t.encode("\xE2\x84\xAB"), (Ids{0xC3, 0x85}));                    // Angstrom sign -> Å
  const Tokenizer none = make(doc(json{{"type", "Sequence"}, {"normalizers", json::array()}}, byte_level_step(),
                                  byte_level_model({}, json::array(), false)));
  EXPECT_EQ(none.encode("e\xCC\x81"), (Ids{0x65, 0xCC, 0x81}));
  EXPECT_THROW(make(doc(json{{"type", "Lowercase"}}, nullptr, char_model(kChars, json::array()))), Error);
}

}  // namespace
}  // namespace fathom::test
