// Decoding: byte-level output with lossy UTF-8 repair, skip_special, streaming, and
// encode/decode round trips on random text.
#include <gtest/gtest.h>

#include <random>

#include "core/error.h"
#include "test_util.h"

namespace fathom::test {
namespace {

using Ids = std::vector<int32_t>;

int32_t byte_id(const Tokenizer& t, int b) {
  auto id = t.token_id(byte_char(b));
  EXPECT_TRUE(id.has_value()) << b;
  return id.value_or(-1);
}

std::string stream(const Tokenizer& t, const Ids& ids, bool skip_special = false) {
  IncrementalDecoder d(t, skip_special);
  std::string out;
  for (int32_t id : ids) {
    const std::string piece = d.push(id);
    out += piece;
  }
  return out + d.flush();
}

TEST(Decode, InvalidBytesBecomeReplacementCharacters) {
  const Tokenizer& t = deepseek();
  // E4 B8 is a truncated 3-byte character: one U+FFFD for both bytes.
  EXPECT_EQ(t.decode(Ids{byte_id(t, 0xE4), byte_id(t, 0xB8), byte_id(t, 'a')}), "\uFFFDa");
  // F0 needs 90..BF next, so F0 alone is one error and 80 another.
  EXPECT_EQ(t.decode(Ids{byte_id(t, 0xF0), byte_id(t, 0x80)}), "\uFFFD\uFFFD");
  // A truncated character at the very end is one U+FFFD.
  EXPECT_EQ(t.decode(Ids{byte_id(t, 'x'), byte_id(t, 0xF0), byte_id(t, 0x9F), byte_id(t, 0x98)}), "x\uFFFD");
  // ED A0 would start a surrogate: ED is an error of its own.
  EXPECT_EQ(t.decode(Ids{byte_id(t, 0xED), byte_id(t, 0xA0), byte_id(t, 0x80)}), "\uFFFD\uFFFD\uFFFD");
  // The complete character decodes.
  EXPECT_EQ(t.decode(Ids{byte_id(t, 0xE4), byte_id(t, 0xB8), byte_id(t, 0xAD)}), "中");
}

TEST(Decode, SpecialTokens) {
  const Tokenizer& t = deepseek();
  const Ids ids = t.encode("<｜begin▁of▁sentence｜><｜User｜>hi<｜end▁of▁sentence｜>");
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), 1);
  EXPECT_EQ(t.decode(ids), "<｜begin▁of▁sentence｜><｜User｜>hi<｜end▁of▁sentence｜>");
  // <｜User｜> is an added token but not a special one in DeepSeek-V3's file.
  EXPECT_FALSE(t.is_special(ids[1]));
  EXPECT_EQ(t.decode(ids, true), "<｜User｜>hi");
  EXPECT_EQ(stream(t, ids, true), "<｜User｜>hi");
  // Unknown ids are skipped.
  EXPECT_EQ(t.decode(Ids{-5, byte_id(t, 'o'), 1 << 30, byte_id(t, 'k')}), "ok");
}

TEST(Decode, IncrementalNeverSplitsCharacters) {
  const Tokenizer& t = deepseek();
  const std::string text = "a😀中é";
  std::string bytes_seen;
  IncrementalDecoder d(t);
  std::string out;
  for (unsigned char c : text) {
    const std::string piece = d.push(byte_id(t, c));
    // Every emitted piece is whole, valid UTF-8.
    EXPECT_TRUE(piece.empty() || nlohmann::json(piece).dump().find("\\ufffd") == std::string::npos);
    out += piece;
    EXPECT_EQ(text.compare(0, out.size(), out), 0);
  }
  EXPECT_EQ(out + d.flush(), text);
}

std::string random_text(std::mt19937& rng) {
  static const std::vector<std::vector<char32_t>> pools = {
      {U'a', U'b', U'z', U'A', U'Q', U'e', U't', U'o', U'n'},
      {U' ', U' ', U' ', U'\t', U'\n', U'\r', 0x3000, 0xA0, 0x2028, 0x85},
      {U'0', U'1', U'5', U'9', 0x663, 0xBD, 0xFF13},
      {U'.', U',', U'!', U'?', U'\'', U'"', U'(', U')', U'{', U'}', U'-', U'_', U'/', U'#', U'<', U'>', U'|'},
      {0x4E2D, 0x6587, 0x5B57, 0x3042, 0x30A2, 0xAC00, 0x9FA5, 0x4E00},
      {0x1F600, 0x1F44D, 0x2764, 0xFE0F, 0x200D, 0x1F3FD},
      {0xE9, 0x65, 0x301, 0x416, 0x3B1, 0x5D0, 0x627, 0x915, 0x94D, 0xE01},
      {0xFF5C, 0x2581, 0x180E, 0xFFFD, 0x10FFFF, 0x1}};
  std::uniform_int_distribution<int> len_d(0, 40);
  const int len = len_d(rng);
  std::string s;
  int pool = 0;
  for (int i = 0; i < len; ++i) {
    if (rng() % 3 == 0) pool = static_cast<int>(rng() % pools.size());  // runs of one script
    const auto& p = pools[pool];
    const char32_t c = p[rng() % p.size()];
    if (c < 0x80) s += static_cast<char>(c);
    else if (c < 0x800) {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      s += static_cast<char>(0xE0 | (c >> 12));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (c >> 18));
      s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  return s;
}

TEST(RoundTrip, DeepSeekRandomUnicode) {
  const Tokenizer& t = deepseek();
  std::mt19937 rng(12345);
  for (int i = 0; i < 3000; ++i) {
    const std::string s = random_text(rng);
    const Ids ids = t.encode(s);
    ASSERT_EQ(t.decode(ids), s) << nlohmann::json(s).dump();
    ASSERT_EQ(stream(t, ids), s) << nlohmann::json(s).dump();
  }
}

TEST(RoundTrip, IncrementalMatchesFullDecodeOnRandomIds) {
  const Tokenizer& t = deepseek();
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    Ids ids(rng() % 12);
    for (auto& id : ids) id = rng() % 3 ? byte_id(t, static_cast<int>(rng() % 256)) : static_cast<int32_t>(rng() % 129000);
    ASSERT_EQ(stream(t, ids), t.decode(ids));
    ASSERT_EQ(stream(t, ids, true), t.decode(ids, true));
  }
}

TEST(RoundTrip, LongWhitespaceAndRepeats) {
  const Tokenizer& t = deepseek();
  for (const std::string& s : {std::string(200000, ' '), std::string(100000, '\n') + "x",
                               std::string(50000, 'a'), std::string(30000, '7')}) {
    EXPECT_EQ(t.decode(t.encode(s)), s);
  }
}

TEST(Encode, RejectsInvalidUtf8) {
  EXPECT_THROW(deepseek().encode("ab\xFF"), Error);
  EXPECT_THROW(deepseek().encode("\xED\xA0\x80"), Error);  // surrogate
  EXPECT_TRUE(deepseek().encode("").empty());
}

}  // namespace
}  // namespace fathom::test
