#pragma once
// Tokenizing costs time and memory in proportion to the text, so a prompt far beyond the
// context is refused before it is tokenized in full: first by a bound from its byte length,
// then by counting its tokens in windows and stopping once the count passes the limit.
#include <cstdint>
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
  // Every token covers at most this many bytes of (unnormalized) text.
  size_t max_token_bytes() const { return max_token_bytes_; }

 private:
  const Tokenizer& tok_;
  size_t max_token_bytes_ = 1;
  // Texts over one window are tokenized two at a time, so their scratch memory is bounded
  // however many arrive together.
  mutable std::counting_semaphore<> big_{2};
};

}  // namespace fathom::server
