#include "tokenizer/added_vocab.h"

#include <algorithm>

#include "tokenizer/unicode.h"

namespace fathom {
namespace {

// The character ending just before `end` (text is valid UTF-8).
char32_t char_before(std::string_view text, size_t end) {
  size_t b = end - 1;
  while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
  return utf8::next(text, b);
}

}  // namespace

AddedMatcher::AddedMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens)
    : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  for (size_t t = 0; t < patterns.size(); ++t) {
    const std::string& p = patterns[t];
    if (p.empty()) continue;
    int32_t n = 0;
    for (char ch : p) {
      const auto b = static_cast<uint8_t>(ch);
      int32_t c = child(n, b);
      if (c < 0) {
        c = static_cast<int32_t>(nodes_.size());
        auto& kids = nodes_[n].next;
        kids.insert(std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{-1})),
                    {b, c});
        nodes_.emplace_back();
      }
      n = c;
    }
    // With duplicate patterns the first one wins, as in a leftmost-longest automaton.
    if (nodes_[n].token < 0) nodes_[n].token = static_cast<int32_t>(t);
    first_byte_[static_cast<uint8_t>(p[0])] = true;
  }
}

int32_t AddedMatcher::child(int32_t node, uint8_t b) const {
  const auto& kids = nodes_[node].next;
  auto it = std::lower_bound(kids.begin(), kids.end(), std::make_pair(b, int32_t{-1}));
  return it != kids.end() && it->first == b ? it->second : -1;
}

int32_t AddedMatcher::longest_at(std::string_view text, size_t pos, size_t& len) const {
  int32_t n = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    n = child(n, static_cast<uint8_t>(text[i]));
    if (n < 0) break;
    if (nodes_[n].token >= 0) {
      best = nodes_[n].token;
      len = i + 1 - pos;
    }
  }
  return best;
}

void AddedMatcher::split(std::string_view text, std::vector<Segment>& out) const {
  if (text.empty()) {
    out.push_back({0, 0, -1});
    return;
  }
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<uint8_t>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t len = 0;
    const int32_t t = longest_at(text, pos, len);
    if (t < 0) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + len;
    pos = stop;  // matches never overlap
    const AddedToken& tok = tokens_[t];
    if (tok.single_word) {
      const bool word_before = start > 0 && utf8::is_word(char_before(text, start));
      size_t k = stop;
      const bool word_after = stop < text.size() && utf8::is_word(utf8::next(text, k));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > 0) {
        size_t b = s - 1;
        while (b > 0 && (static_cast<uint8_t>(text[b]) & 0xC0) == 0x80) --b;
        size_t k = b;
        if (!utf8::is_whitespace(utf8::next(text, k))) break;
        s = b;
      }
      // Whitespace already taken by the previous match stays with it.
      start = std::max(s, start_offset);
    }
    if (tok.rstrip) {
      while (stop < text.size()) {
        size_t k = stop;
        if (!utf8::is_whitespace(utf8::next(text, k))) break;
        stop = k;
      }
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, tok.id});
    start_offset = stop;
  }
  if (start_offset != text.size()) out.push_back({start_offset, text.size(), -1});
}

}  // namespace fathom
