#pragma once
// UTF-8 helpers shared by the tokenizer: validation, decoding one code point, the lossy
// conversion HF's decoders apply to byte output, Unicode character classes and NFC.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fathom::utf8 {

// Byte length of the first invalid sequence at `s`, or 0 when `s` starts with a valid
// character. `complete` is false when the bytes are a valid but truncated prefix of a
// character that more input could finish.
struct SeqCheck {
  size_t len;      // length of the valid character, or of the invalid run to replace
  bool valid;      // a whole, well-formed character
  bool complete;   // false: a well-formed prefix cut off by the end of `s`
};
SeqCheck check_seq(std::string_view s);

// Offset of the first malformed byte, or npos when `s` is valid UTF-8.
size_t find_invalid(std::string_view s);

// Decodes the code point at s[i] (which must be valid) and advances i.
char32_t next(std::string_view s, size_t& i);
void append(std::string& out, char32_t cp);

// Appends the text of `s` to `out`, each maximal invalid subsequence replaced by U+FFFD
// (the Unicode "best practice" that Rust's from_utf8_lossy follows). When `final` is false,
// a trailing truncated character is left unconsumed. Returns the bytes consumed.
size_t append_lossy(std::string& out, std::string_view s, bool final);

// Character classes with the definitions Rust's char methods and regex crate use.
bool is_whitespace(char32_t c);  // White_Space property
bool is_numeric(char32_t c);     // general category Nd, Nl or No
bool is_word(char32_t c);        // Alphabetic, M, Nd, Pc or Join_Control (regex \w)

enum class NormForm { NFC, NFD, NFKC, NFKD };
// Unicode normalization of valid UTF-8 (ICU).
std::string normalize(std::string_view s, NormForm form);

}  // namespace fathom::utf8
