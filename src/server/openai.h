#pragma once
// The OpenAI/DeepSeek wire schema: request validation into plain structs, and the JSON of
// responses, stream chunks and errors. Knows nothing of sockets or the engine's internals.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/sampler.h"

namespace fathom::server {

using nlohmann::json;

// An error answered in OpenAI's shape {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  int status;
  std::string type, param, code;
  ApiError(int status, std::string message, std::string param = {}, std::string code = {});
};

json error_body(int status, const std::string& message, const std::string& param = {},
                const std::string& code = {});

struct ParsedRequest {
  bool chat = true;
  std::string model;
  json messages;                          // chat: normalised messages for the template
  json template_extra = json::object();   // chat: tools etc.
  std::string prompt_text;                // completions: text prompt
  std::vector<int32_t> prompt_ids;        // completions: token-id prompt (when non-empty)
  std::optional<int64_t> max_tokens;
  SamplingParams sampling;
  std::vector<std::string> stops;
  int top_logprobs = -1;                  // -1: no logprobs
  bool stream = false;
  bool include_usage = false;
  bool return_token_ids = false;          // extension: choices[].token_ids (for clients that need ids)
};

struct TemplateCaps {
  bool tools = false;  // the chat template renders a `tools` list
};

// The body as JSON; ApiError(400) when it is not JSON or nests deeper than the server allows.
json parse_body(std::string_view body);

// Throw ApiError(400, ..., param) naming the offending field. The body is taken by value so
// that a caller done with it can move it in, and its prompt strings are moved, not copied.
ParsedRequest parse_chat_request(json body, const TemplateCaps& caps);
ParsedRequest parse_completion_request(json body);

// Usage as DeepSeek reports it (a superset of OpenAI's).
struct Usage {
  int64_t prompt = 0, completion = 0, reasoning = 0, cached = 0;
};
json usage_json(const Usage& u);

// One generated token's log-probabilities, as text.
struct LogprobEntry {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
  // Completions: characters (code points, as OpenAI counts them) of the returned text
  // before this token's own text; special tokens add nothing to the text.
  size_t text_offset = 0;
};
json chat_logprobs_json(const std::vector<LogprobEntry>& entries);
json completion_logprobs_json(const std::vector<LogprobEntry>& entries);

// "data: {...}\n\n"
std::string sse(const json& j);

}  // namespace fathom::server
