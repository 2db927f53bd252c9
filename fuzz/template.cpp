// libFuzzer target: parse and render arbitrary template bytes against a fixed conversation.
// Any fathom::Error is an accepted outcome; crashes, sanitizer reports and hangs are bugs.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "template/jinja.h"

namespace {

const fathom::jinja::Context& context() {
  static const fathom::jinja::Context ctx = [] {
    auto msgs = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi <b>there</b> \u00e9"},
      {"role": "assistant", "content": null, "tool_calls": [
        {"type": "function", "function": {"name": "f", "arguments": {"x": 1, "y": [1.5, true]}}}]},
      {"role": "tool", "content": "42"},
      {"role": "assistant", "content": "<think>hm</think>ok"}])");
    fathom::jinja::Context c;
    c["messages"] = fathom::jinja::Value::from_json(msgs);
    c["tools"] = fathom::jinja::Value::from_json(nlohmann::ordered_json::parse(
        R"([{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}])"));
    c["add_generation_prompt"] = fathom::jinja::Value::boolean(true);
    c["bos_token"] = fathom::jinja::Value::string("<s>");
    c["eos_token"] = fathom::jinja::Value::string("</s>");
    return c;
  }();
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  fathom::jinja::Options opt;
  opt.max_steps = 20000;  // keep each input fast; the limits themselves are under test
  opt.max_output_bytes = 1 << 16;
  try {
    auto t = fathom::jinja::Template::parse(std::string(reinterpret_cast<const char*>(data), size), opt);
    (void)t.render(context());
  } catch (const fathom::Error&) {
  }
  return 0;
}
