#include "server/text_stream.h"

#include <algorithm>

namespace fathom::server {

namespace {
constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// Length of the longest suffix of `s` that is a proper prefix of `pat`.
size_t partial_suffix(std::string_view s, std::string_view pat) {
  for (size_t n = std::min(s.size(), pat.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == pat.substr(0, n)) return n;
  return 0;
}
}  // namespace

bool prompt_opens_reasoning(std::string_view p) {
  while (!p.empty() && (p.back() == '\n' || p.back() == ' ' || p.back() == '\r')) p.remove_suffix(1);
  return p.size() >= kOpen.size() && p.substr(p.size() - kOpen.size()) == kOpen;
}

TextStream::TextStream(TextStreamOpts opts) : opts_(std::move(opts)) {
  std::erase_if(opts_.stops, [](const std::string& s) { return s.empty(); });
  reasoning_ = opts_.split_reasoning && opts_.start_in_reasoning;
}

void TextStream::split_tags(bool final) {
  auto take = [&](size_t n) {
    held_.append(raw_, 0, n);
    kinds_.append(n, reasoning_ ? 'r' : 'c');
    raw_.erase(0, n);
  };
  while (opts_.split_reasoning && !final) {
    const std::string_view tag = reasoning_ ? kClose : kOpen;
    const size_t at = raw_.find(tag);
    if (at == std::string::npos) {
      // Hold back a tail that could still grow into the tag.
      take(raw_.size() - partial_suffix(raw_, tag));
      return;
    }
    take(at);
    raw_.erase(0, tag.size());
    reasoning_ = !reasoning_;
  }
  take(raw_.size());  // at the end a partial tag is plain text
}

TextDelta TextStream::release(bool final) {
  // The cut is before the earliest-starting stop string of the whole text. A stop found at
  // `found` is final only when no stop could still start before it: a tail of held_ that
  // begins earlier and is a prefix of some stop may complete into an earlier match (stops
  // {"abcd", "bc"}: "abc" waits, "abcd" cuts at 0, "abcx" at 1).
  size_t found = std::string::npos;
  for (const auto& s : opts_.stops) found = std::min(found, held_.find(s));
  size_t pending = held_.size();  // where the earliest possible unfinished match starts
  if (!final)
    for (const auto& s : opts_.stops) pending = std::min(pending, held_.size() - partial_suffix(held_, s));
  size_t n = std::min(found, pending);
  if (found != std::string::npos && found <= pending) {
    n = found;
    stopped_ = true;
  }
  TextDelta d;
  for (size_t i = 0; i < n; ++i) (kinds_[i] == 'r' ? d.reasoning : d.content).push_back(held_[i]);
  if (stopped_) {
    held_.clear();
    kinds_.clear();
    raw_.clear();
  } else {
    held_.erase(0, n);
    kinds_.erase(0, n);
  }
  return d;
}

TextDelta TextStream::push(std::string_view text) {
  if (stopped_) return {};
  raw_.append(text);
  split_tags(false);
  return release(false);
}

TextDelta TextStream::flush() {
  if (stopped_) return {};
  split_tags(true);
  return release(true);
}

}  // namespace fathom::server
