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

void TextStream::emit(TextDelta& d, std::string_view s) const { (reasoning_ ? d.reasoning : d.content).append(s); }

TextDelta TextStream::push(std::string_view text) {
  TextDelta d;
  if (stopped_) return d;
  buf_.append(text);
  for (;;) {
    size_t stop_at = std::string::npos;
    for (const auto& s : opts_.stops) stop_at = std::min(stop_at, buf_.find(s));
    size_t tag_at = std::string::npos;
    std::string_view tag = reasoning_ ? kClose : kOpen;
    if (opts_.split_reasoning) tag_at = buf_.find(tag);
    if (tag_at != std::string::npos && (stop_at == std::string::npos || tag_at < stop_at)) {
      emit(d, std::string_view(buf_).substr(0, tag_at));
      buf_.erase(0, tag_at + tag.size());
      reasoning_ = !reasoning_;
      continue;
    }
    if (stop_at != std::string::npos) {
      emit(d, std::string_view(buf_).substr(0, stop_at));
      buf_.clear();
      stopped_ = true;
      return d;
    }
    break;
  }
  // Hold back a tail that could still grow into a stop string or a tag.
  size_t hold = 0;
  for (const auto& s : opts_.stops) hold = std::max(hold, partial_suffix(buf_, s));
  if (opts_.split_reasoning) hold = std::max(hold, partial_suffix(buf_, reasoning_ ? kClose : kOpen));
  emit(d, std::string_view(buf_).substr(0, buf_.size() - hold));
  buf_.erase(0, buf_.size() - hold);
  return d;
}

TextDelta TextStream::flush() {
  TextDelta d;
  if (stopped_) return d;
  emit(d, buf_);
  buf_.clear();
  return d;
}

}  // namespace fathom::server
