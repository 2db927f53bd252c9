#include "server/prompt_limit.h"

#include <algorithm>
#include <span>

#include <fmt/format.h>

#include "runtime/sequence.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_impl.h"

namespace fathom::server {

namespace {

constexpr size_t kWindow = 64u << 10;
// Tokens a cut may add to the windows' total over the text's own count: the byte-level BPE
// pre-tokenizers (DeepSeek, Llama-3, Qwen2) split at every cut chosen below anyway, so this
// is slack for tokenizers that do not.
constexpr int64_t kSlackPerCut = 4;

bool ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Where a pre-tokenizer starts a new piece whatever follows: before a line that starts with a
// letter, or before " word" after a letter.
bool piece_boundary(std::string_view t, size_t p) {
  if (p == 0 || p + 1 >= t.size()) return false;
  if (t[p - 1] == '\n') return ascii_letter(t[p]);
  return t[p] == ' ' && ascii_letter(t[p - 1]) && ascii_letter(t[p + 1]);
}

[[noreturn]] void too_long(int64_t at_least, size_t bytes, int64_t limit) {
  throw PromptError(PromptError::TooLong,
                    fmt::format("the prompt has at least {} tokens ({} bytes) but the context holds {} tokens "
                                "(prompt and completion together); shorten the prompt",
                                at_least, bytes, limit));
}

bool json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

void skip_space(std::string_view s, size_t& i) {
  while (i < s.size() && json_space(s[i])) ++i;
}

// Skips the string that starts at s[i] == '"'; returns a lower bound on its decoded bytes
// (every escape decodes to at least one), or nullopt when it does not end.
std::optional<size_t> skip_string(std::string_view s, size_t& i) {
  size_t n = 0;
  for (++i; i < s.size(); ++n) {
    const char c = s[i++];
    if (c == '"') return n;
    if (c == '\\') {
      if (i >= s.size()) return std::nullopt;
      i += s[i] == 'u' ? 5 : 1;
    }
  }
  return std::nullopt;
}

// Skips any value; nested containers by counting brackets outside strings.
bool skip_value(std::string_view s, size_t& i) {
  if (i >= s.size()) return false;
  if (s[i] == '"') return skip_string(s, i).has_value();
  if (s[i] != '{' && s[i] != '[') {
    const size_t start = i;
    while (i < s.size() && !json_space(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']') ++i;
    return i > start;
  }
  size_t depth = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (c == '"') {
      if (!skip_string(s, i)) return false;
      continue;
    }
    ++i;
    if (c == '{' || c == '[') ++depth;
    else if ((c == '}' || c == ']') && --depth == 0) return true;
  }
  return false;
}

}  // namespace

std::optional<size_t> top_level_string_bytes(std::string_view s, std::string_view key) {
  std::optional<size_t> found;
  size_t i = 0;
  skip_space(s, i);
  if (i >= s.size() || s[i++] != '{') return std::nullopt;
  // Only an object that ends is trusted, so that a malformed body gets the parser's error.
  skip_space(s, i);
  if (i < s.size() && s[i] == '}') return std::nullopt;
  for (;;) {
    skip_space(s, i);
    if (i >= s.size() || s[i] != '"') return std::nullopt;
    const size_t key_start = i + 1;
    if (!skip_string(s, i)) return std::nullopt;
    const bool match = s.substr(key_start, i - 1 - key_start) == key;
    skip_space(s, i);
    if (i >= s.size() || s[i++] != ':') return std::nullopt;
    skip_space(s, i);
    if (match && i < s.size() && s[i] == '"') {
      found = skip_string(s, i);
    } else {
      if (match) found.reset();  // a later field of another type replaces the string
      if (!skip_value(s, i)) return std::nullopt;
    }
    skip_space(s, i);
    if (i < s.size() && s[i] == '}') return found;
    if (i >= s.size() || s[i++] != ',') return std::nullopt;
  }
}

PromptEncoder::PromptEncoder(const Tokenizer& tok) : tok_(tok) {
  for (int32_t id = 0; id < tok.vocab_size(); ++id)
    max_token_bytes_ = std::max(max_token_bytes_, tok.decode(std::span<const int32_t>(&id, 1)).size());
  // A normalizer may shrink text (NFKC maps a 3-byte fullwidth letter to 1 byte), by at most
  // the 4 bytes of the longest UTF-8 character.
  if (!tok.impl().normalizer.identity()) max_token_bytes_ *= 4;
}

void PromptEncoder::check_bytes(size_t bytes, int64_t limit) const {
  const int64_t at_least = int64_t((bytes + max_token_bytes_ - 1) / max_token_bytes_);
  if (at_least >= limit) too_long(at_least, bytes, limit);
}

std::vector<int32_t> PromptEncoder::encode(std::string_view text, int64_t limit) const {
  check_bytes(text.size(), limit);
  if (text.size() <= kWindow) return tok_.encode(text);

  big_.acquire();
  struct Release {
    std::counting_semaphore<>& s;
    ~Release() { s.release(); }
  } release{big_};
  int64_t counted = 0, cuts = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = pos + kWindow;
    while (end < text.size() && !piece_boundary(text, end)) ++end;
    if (end < text.size()) ++cuts;
    else end = text.size();
    if (pos == 0 && end == text.size()) break;  // no place to cut: one pass over the whole text
    counted += int64_t(tok_.encode(text.substr(pos, end - pos)).size());
    if (counted - kSlackPerCut * cuts >= limit) too_long(counted - kSlackPerCut * cuts, text.size(), limit);
    pos = end;
  }
  return tok_.encode(text);
}

}  // namespace fathom::server
