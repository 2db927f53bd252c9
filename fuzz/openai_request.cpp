// libFuzzer target: request bodies of /v1/chat/completions and /v1/completions through the
// JSON parse and validation into sampling parameters (and the raw prompt-length scan that
// runs before the parse, which must never overstate the prompt), and the same bytes as a generation
// streamed through TextStream (random stop strings, <think> split, random piece sizes),
// checked against a direct computation of what the client must see.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "server/openai.h"
#include "server/prompt_limit.h"
#include "server/text_stream.h"

namespace {

using namespace fathom::server;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

void check_request(const ParsedRequest& r) {
  check(!r.max_tokens || (*r.max_tokens >= 1 && *r.max_tokens <= std::numeric_limits<int32_t>::max()));
  const auto& s = r.sampling;
  check(s.temperature >= 0.0f && s.temperature <= 2.0f);
  check(s.top_p > 0.0f && s.top_p <= 1.0f);
  check(s.top_k >= 0 && s.min_p >= 0.0f && s.min_p <= 1.0f);
  check(s.presence_penalty >= -2.0f && s.presence_penalty <= 2.0f);
  check(s.frequency_penalty >= -2.0f && s.frequency_penalty <= 2.0f);
  check(r.top_logprobs >= -1 && r.top_logprobs <= 20);
  check(r.stops.size() <= 16);
  if (r.chat) {
    check(r.messages.is_array() && !r.messages.empty());
    for (const auto& m : r.messages) check(m.is_object() && m["role"].is_string());
  } else {
    check(!r.prompt_text.empty() || !r.prompt_ids.empty());
    for (int32_t t : r.prompt_ids) check(t >= 0);
  }
  // What the server sends back must serialise whatever the client put in.
  (void)sse(json{{"model", r.model}, {"stops", r.stops}, {"messages", r.messages}});
}

void fuzz_request(std::string_view body) {
  const std::optional<size_t> scanned = top_level_string_bytes(body, "prompt");
  json j;
  try {
    j = parse_body(body);
  } catch (const ApiError& e) {
    check(e.status == 400);
    return;
  }
  // A body the parser accepts: the scan found the prompt the parser keeps, and never more
  // bytes than it holds (a request is refused on that bound without being parsed).
  if (scanned) check(j.is_object() && j.contains("prompt") && j["prompt"].is_string() &&
                     *scanned <= j["prompt"].get_ref<const std::string&>().size());
  for (int kind = 0; kind < 3; ++kind) {
    try {
      check_request(kind == 2 ? parse_completion_request(j) : parse_chat_request(j, TemplateCaps{kind == 1}));
    } catch (const ApiError& e) {
      check(e.status == 400);
      (void)error_body(e.status, e.what(), e.param, e.code).dump(-1, ' ', false, json::error_handler_t::replace);
    }
  }
}

// What the client must see, computed on the whole text at once: the text with the tags
// removed, each byte labelled reasoning or content, cut before the first stop string.
struct Expected {
  std::string text, kinds, reasoning, content;
  bool stopped = false;
};

Expected expected(const TextStreamOpts& o, std::string_view raw) {
  Expected e;
  bool reasoning = o.split_reasoning && o.start_in_reasoning;
  for (size_t i = 0; i < raw.size();) {
    const std::string_view tag = reasoning ? "</think>" : "<think>";
    const size_t at = o.split_reasoning ? raw.find(tag, i) : std::string_view::npos;
    const size_t end = at == std::string_view::npos ? raw.size() : at;
    e.text.append(raw.substr(i, end - i));
    e.kinds.append(end - i, reasoning ? 'r' : 'c');
    if (at == std::string_view::npos) break;
    i = at + tag.size();
    reasoning = !reasoning;
  }
  size_t cut = std::string::npos;
  for (const auto& s : o.stops)
    if (!s.empty()) cut = std::min(cut, e.text.find(s));
  e.stopped = cut != std::string::npos;
  if (e.stopped) {
    e.text.resize(cut);
    e.kinds.resize(cut);
  }
  for (size_t i = 0; i < e.text.size(); ++i) (e.kinds[i] == 'r' ? e.reasoning : e.content).push_back(e.text[i]);
  return e;
}

void fuzz_text_stream(FuzzedDataProvider& in) {
  TextStreamOpts o;
  o.split_reasoning = in.ConsumeBool();
  o.start_in_reasoning = in.ConsumeBool();
  const int n_stops = in.ConsumeIntegralInRange(0, 4);
  for (int i = 0; i < n_stops; ++i) o.stops.push_back(in.ConsumeRandomLengthString(12));
  const std::string raw = in.ConsumeRandomLengthString(512);
  const Expected want = expected(o, raw);

  TextStream ts(o);
  std::string reasoning, content;
  size_t pos = 0;
  while (pos < raw.size()) {
    const size_t n = std::min(raw.size() - pos, size_t(in.ConsumeIntegralInRange(0, 16)));
    const TextDelta d = ts.push(std::string_view(raw).substr(pos, n));
    reasoning += d.reasoning;
    content += d.content;
    pos += n;
    if (n == 0 && in.remaining_bytes() == 0) {
      // Out of piece sizes: the rest in one piece.
      const TextDelta r = ts.push(std::string_view(raw).substr(pos));
      reasoning += r.reasoning;
      content += r.content;
      pos = raw.size();
    }
    // Released text is final: it must already agree with the whole-text answer.
    check(want.reasoning.compare(0, reasoning.size(), reasoning) == 0 && reasoning.size() <= want.reasoning.size());
    check(want.content.compare(0, content.size(), content) == 0 && content.size() <= want.content.size());
  }
  const TextDelta f = ts.flush();
  reasoning += f.reasoning;
  content += f.content;
  check(ts.stopped() == want.stopped);
  check(reasoning == want.reasoning && content == want.content);
  // No stop string in what was emitted (in order, with tags removed).
  for (const auto& s : o.stops)
    if (!s.empty()) check(want.text.find(s) == std::string::npos);
  if (ts.stopped()) check(ts.push("more").empty());  // nothing after a stop
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz_request(std::string_view(reinterpret_cast<const char*>(data), size));
  FuzzedDataProvider in(data, size);
  fuzz_text_stream(in);
  return 0;
}
