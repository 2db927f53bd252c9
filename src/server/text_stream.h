#pragma once
// Turns streamed completion text into what the client may see: splits DeepSeek-R1 reasoning
// (<think>…</think>) from the answer, and cuts at the first stop string (never emitting any
// part of it, holding back text that may start one).
// The promise: what is emitted, and whether it stopped, equals the whole text with the tags
// removed, cut before the earliest-starting occurrence of any stop string, however the text
// is split into pieces (a stop already found waits while one that starts earlier may still
// complete).
#include <string>
#include <string_view>
#include <vector>

namespace fathom::server {

struct TextDelta {
  std::string reasoning;
  std::string content;
  bool empty() const { return reasoning.empty() && content.empty(); }
};

struct TextStreamOpts {
  std::vector<std::string> stops;
  bool split_reasoning = false;   // chat: recognise <think> … </think>
  bool start_in_reasoning = false;  // the prompt already opened <think>
};

class TextStream {
 public:
  explicit TextStream(TextStreamOpts opts);
  // Adds text; returns what can be released now. After a stop string, stopped() is true and
  // further text is ignored.
  TextDelta push(std::string_view text);
  // Releases whatever is held back (end of generation without a stop string).
  TextDelta flush();
  bool stopped() const { return stopped_; }
  bool in_reasoning() const { return reasoning_; }

 private:
  void split_tags(bool final);
  TextDelta release(bool final);
  TextStreamOpts opts_;
  std::string raw_;    // text that may still hold the start of a tag
  std::string held_;   // tag-free text that may still hold the start of a stop string
  std::string kinds_;  // per byte of held_: 'r' reasoning, 'c' content
  bool reasoning_;
  bool stopped_ = false;
};

// DeepSeek-R1's generation prompt ends inside the reasoning ("<think>\n").
bool prompt_opens_reasoning(std::string_view prompt);

}  // namespace fathom::server
