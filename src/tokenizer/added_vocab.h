#pragma once
// Added tokens (special or not) are cut out of the text before normalization and
// pre-tokenization. Matching is leftmost-longest over all contents, with HF's lstrip /
// rstrip / single_word adjustments.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fathom {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false, normalized = true, single_word = false;
};

struct Segment {
  size_t begin, end;
  int32_t id;  // the added token, or -1 for text left to tokenize
};

class AddedMatcher {
 public:
  AddedMatcher() = default;
  // `patterns[i]` is matched for `tokens[i]` (the pattern may be the normalized content).
  AddedMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens);

  bool empty() const { return tokens_.empty(); }
  // Splits `text` into added tokens and the text between them, covering all of `text`.
  void split(std::string_view text, std::vector<Segment>& out) const;

 private:
  // Byte trie; a node's children are sorted by byte.
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;
    int32_t token = -1;  // index into tokens_ of the pattern ending here
  };
  int32_t child(int32_t node, uint8_t b) const;
  // Longest pattern starting at `pos`: returns its token index and sets `len`, or -1.
  int32_t longest_at(std::string_view text, size_t pos, size_t& len) const;

  std::vector<Node> nodes_;
  bool first_byte_[256] = {};
  std::vector<AddedToken> tokens_;
};

}  // namespace fathom
