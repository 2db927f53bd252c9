#pragma once
// Tokenizing costs time and memory in proportion to the text, so a prompt far beyond the
// context is refused before it is tokenized in full: first by a bound from its byte length,
// then by counting its tokens in windows and stopping once the count passes the limit.
#include <cstdint>
#include <optional>
#include <semaphore>
#include <string_view>
#include <vector>

namespace fathom {
class Tokenizer;
}

namespace fathom::server {

class PromptEncoder {
 public:
  explicit PromptEncoder(const Tokenizer& tok);
  // tok.encode(text); throws PromptError(TooLong) instead when the text certainly has `limit`
  // tokens or more, after work bounded by `limit` rather than by the text's size.
  std::vector<int32_t> encode(std::string_view text, int64_t limit) const;
  // Throws PromptError(TooLong) when a text of `bytes` bytes certainly has `limit` tokens or more.
  void check_bytes(size_t bytes, int64_t limit) const;
  // Every token covers at most this many bytes of (unnormalized) text.
  size_t max_token_bytes() const { return max_token_bytes_; }

 private:
  const Tokenizer& tok_;
  size_t max_token_bytes_ = 1;
  // Texts over one window are tokenized two at a time, so their scratch memory is bounded
  // however many arrive together.
  mutable std::counting_semaphore<> big_{2};
};

// A lower bound on the bytes of the string value of the top-level field `key` of the JSON
// object `body` (the last such field, as the parser keeps), found without parsing it into
// memory; nullopt when there is none or the body is not well-formed that far (the parser then
// says why). Lets a request with a huge prompt be refused before its JSON doubles it.
std::optional<size_t> top_level_string_bytes(std::string_view body, std::string_view key);

}  // namespace fathom::server
