#include "server/openai.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <random>

namespace fathom::server {

namespace {

const char* error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "not_found_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 500: return "server_error";
    case 503: return "server_error";
    default: return "invalid_request_error";
  }
}

[[noreturn]] void bad(const std::string& param, const std::string& msg, const std::string& code = {}) {
  throw ApiError(400, msg, param, code);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a float";
    default: return "an integer";
  }
}

// Present and not null.
const json* field(const json& b, const char* name) {
  auto it = b.find(name);
  if (it == b.end() || it->is_null()) return nullptr;
  return &*it;
}
json* field(json& b, const char* name) { return const_cast<json*>(field(std::as_const(b), name)); }

// Moves a string out of the request: a prompt may be megabytes, and the request is dropped next.
std::string take_string(json& s) { return std::move(s.get_ref<std::string&>()); }

double number(const json& b, const char* name, double lo, double hi, double dflt) {
  const json* v = field(b, name);
  if (!v) return dflt;
  if (!v->is_number()) bad(name, fmt::format("'{}' must be a number, not {}", name, type_name(*v)));
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

std::optional<int64_t> integer(const json& b, const char* name, int64_t lo, int64_t hi) {
  const json* v = field(b, name);
  if (!v) return std::nullopt;
  // 3.0 is accepted as 3, as OpenAI does; 3.5 is not. The range is checked on the double:
  // converting one outside int64's range is undefined.
  if (v->is_number_float() && std::trunc(v->get<double>()) == v->get<double>()) {
    const double d = v->get<double>();
    if (!(d >= double(lo) && d <= double(hi)))
      bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, d));
    const int64_t x = d >= 0x1p63 ? std::numeric_limits<int64_t>::max() : int64_t(d);
    if (x < lo || x > hi) bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
    return x;
  }
  if (!v->is_number_integer()) bad(name, fmt::format("'{}' must be an integer, not {}", name, type_name(*v)));
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(hi))
    bad(name, fmt::format("'{}' must be between {} and {}", name, lo, hi));
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi) bad(name, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x));
  return x;
}

bool boolean(const json& b, const char* name, bool dflt) {
  const json* v = field(b, name);
  if (!v) return dflt;
  if (!v->is_boolean()) bad(name, fmt::format("'{}' must be a boolean, not {}", name, type_name(*v)));
  return v->get<bool>();
}

// Fields every generation request shares.
void parse_common(const json& b, ParsedRequest& r) {
  if (const json* m = field(b, "model")) {
    if (!m->is_string()) bad("model", fmt::format("'model' must be a string, not {}", type_name(*m)));
    r.model = m->get<std::string>();
  }
  if (auto n = integer(b, "n", 1, 128); n && *n != 1)
    bad("n", "'n' must be 1: this server returns one choice per request");
  if (auto n = integer(b, "best_of", 1, 128); n && *n != 1) bad("best_of", "'best_of' must be 1");
  if (const json* lb = field(b, "logit_bias")) {
    if (!lb->is_object()) bad("logit_bias", "'logit_bias' must be an object");
    if (!lb->empty()) bad("logit_bias", "'logit_bias' is not supported");
  }
  r.max_tokens = integer(b, "max_tokens", 1, std::numeric_limits<int32_t>::max());
  if (auto m = integer(b, "max_completion_tokens", 1, std::numeric_limits<int32_t>::max())) r.max_tokens = m;

  SamplingParams& s = r.sampling;
  s.temperature = float(number(b, "temperature", 0.0, 2.0, 1.0));
  s.top_p = float(number(b, "top_p", 0.0, 1.0, 1.0));
  if (field(b, "top_p") && s.top_p <= 0.0f) bad("top_p", "'top_p' must be greater than 0");
  s.top_k = int32_t(integer(b, "top_k", -1, std::numeric_limits<int32_t>::max()).value_or(0));
  if (s.top_k < 0) s.top_k = 0;  // -1 means off, as in vLLM
  s.min_p = float(number(b, "min_p", 0.0, 1.0, 0.0));
  s.presence_penalty = float(number(b, "presence_penalty", -2.0, 2.0, 0.0));
  s.frequency_penalty = float(number(b, "frequency_penalty", -2.0, 2.0, 0.0));
  if (auto seed = integer(b, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    s.seed = uint64_t(*seed);
  else
    s.seed = std::random_device{}() * 0x9e3779b97f4a7c15ull ^ std::random_device{}();

  if (const json* st = field(b, "stop")) {
    if (st->is_string()) {
      r.stops.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      if (st->size() > 16) bad("stop", "'stop' may hold at most 16 strings");
      for (const auto& x : *st) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or a list of strings");
        r.stops.push_back(x.get<std::string>());
      }
    } else {
      bad("stop", fmt::format("'stop' must be a string or a list of strings, not {}", type_name(*st)));
    }
  }
  r.stream = boolean(b, "stream", false);
  r.return_token_ids = boolean(b, "return_token_ids", false);
  if (const json* so = field(b, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage", false);
  }
}

constexpr int kMaxJsonDepth = 64;

// Deeply nested JSON would make copies and destruction recurse without bound.
bool json_too_deep(std::string_view s) {
  int depth = 0;
  bool in_str = false, esc = false;
  for (char c : s) {
    if (in_str) {
      if (esc) esc = false;
      else if (c == '\\') esc = true;
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

std::string message_content(json& c, size_t i) {
  const std::string p = fmt::format("messages[{}].content", i);
  if (c.is_string()) return take_string(c);
  if (!c.is_array()) bad(p, fmt::format("'{}' must be a string or a list of text parts, not {}", p, type_name(c)));
  std::string out;
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      bad(p, fmt::format("'{}' parts must be objects with a 'type'", p));
    const std::string t = part["type"].get<std::string>();
    if (t != "text") bad(p, fmt::format("content parts of type '{}' are not supported (text only)", t));
    if (!part.contains("text") || !part["text"].is_string()) bad(p, fmt::format("'{}' text part needs a 'text' string", p));
    out += part["text"].get<std::string>();
  }
  return out;
}

}  // namespace

json parse_body(std::string_view body) {
  if (json_too_deep(body)) throw ApiError(400, fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth));
  try {
    return json::parse(body);
  } catch (const json::exception& e) {
    // Not only parse_error: a number beyond double's range (2e400) throws out_of_range.
    throw ApiError(400, fmt::format("the body is not valid JSON: {}", e.what()));
  }
}

ApiError::ApiError(int s, std::string message, std::string p, std::string c)
    : std::runtime_error(std::move(message)), status(s), type(error_type(s)), param(std::move(p)), code(std::move(c)) {}

json error_body(int status, const std::string& message, const std::string& param, const std::string& code) {
  json e = {{"message", message}, {"type", error_type(status)}, {"param", nullptr}, {"code", nullptr}};
  if (!param.empty()) e["param"] = param;
  if (!code.empty()) e["code"] = code;
  return json{{"error", e}};
}

ParsedRequest parse_chat_request(json b, const TemplateCaps& caps) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  ParsedRequest r;
  r.chat = true;
  parse_common(b, r);
  json* msgs = field(b, "messages");
  if (!msgs) bad("messages", "'messages' is required");
  if (!msgs->is_array()) bad("messages", fmt::format("'messages' must be an array, not {}", type_name(*msgs)));
  if (msgs->empty()) bad("messages", "'messages' must not be empty");
  r.messages = json::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    json& m = (*msgs)[i];
    const std::string p = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(p, fmt::format("'{}' must be an object", p));
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad(p + ".role", fmt::format("'{}.role' must be a string", p));
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool")
      bad(p + ".role", fmt::format("unknown role '{}'", rs));
    json out = json::object();
    out["role"] = rs;
    // reasoning_content of earlier turns is not fed back to the model (as DeepSeek does).
    json* c = field(m, "content");
    if (c) out["content"] = message_content(*c, i);
    else if (rs == "assistant" && field(m, "tool_calls")) out["content"] = nullptr;
    else out["content"] = "";
    for (const char* k : {"tool_calls", "tool_call_id", "name"})
      if (const json* v = field(m, k)) out[k] = *v;
    if (const json* tc = field(m, "tool_calls"); tc && !tc->is_array())
      bad(p + ".tool_calls", "'tool_calls' must be an array");
    r.messages.push_back(std::move(out));
  }
  if (const json* t = field(b, "tools")) {
    if (!t->is_array()) bad("tools", "'tools' must be an array");
    if (!t->empty()) {
      if (!caps.tools) bad("tools", "this model's chat template does not support 'tools'");
      r.template_extra["tools"] = *t;
    }
  }
  if (const json* f = field(b, "functions"); f && !(f->is_array() && f->empty()))
    bad("functions", "'functions' is not supported");
  if (const json* rf = field(b, "response_format")) {
    if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
      bad("response_format", "'response_format' must be an object with a 'type'");
    if ((*rf)["type"] != "text")
      bad("response_format", fmt::format("response_format type '{}' is not supported (only 'text')",
                                         (*rf)["type"].get<std::string>()));
  }
  const bool lp = boolean(b, "logprobs", false);
  auto top = integer(b, "top_logprobs", 0, 20);
  if (top && !lp) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  if (lp) r.top_logprobs = int(top.value_or(0));
  return r;
}

ParsedRequest parse_completion_request(json b) {
  if (!b.is_object()) bad("", "the request body must be a JSON object");
  ParsedRequest r;
  r.chat = false;
  parse_common(b, r);
  json* p = field(b, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  auto ids_of = [&](const json& a) {
    std::vector<int32_t> ids;
    for (const auto& x : a) {
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > std::numeric_limits<int32_t>::max())
        bad("prompt", "a token-id prompt must hold non-negative integers");
      ids.push_back(int32_t(x.get<int64_t>()));
    }
    return ids;
  };
  if (p->is_string()) {
    r.prompt_text = take_string(*p);
  } else if (p->is_array() && !p->empty() && p->front().is_number()) {
    r.prompt_ids = ids_of(*p);
  } else if (p->is_array() && p->size() == 1 && (p->front().is_string() || p->front().is_array())) {
    if (p->front().is_string()) r.prompt_text = take_string(p->front());
    else r.prompt_ids = ids_of(p->front());
  } else if (p->is_array() && p->size() > 1) {
    bad("prompt", "only one prompt per request is supported");
  } else {
    bad("prompt", fmt::format("'prompt' must be a string or a list of token ids, not {}", type_name(*p)));
  }
  if (r.prompt_text.empty() && r.prompt_ids.empty()) bad("prompt", "'prompt' must not be empty");
  if (boolean(b, "echo", false)) bad("echo", "'echo' is not supported");
  if (const json* s = field(b, "suffix"); s && !(s->is_string() && s->get<std::string>().empty()))
    bad("suffix", "'suffix' is not supported");
  if (auto lp = integer(b, "logprobs", 0, 20)) r.top_logprobs = int(*lp);
  return r;
}

json usage_json(const Usage& u) {
  return json{{"prompt_tokens", u.prompt},
              {"completion_tokens", u.completion},
              {"total_tokens", u.prompt + u.completion},
              {"prompt_tokens_details", {{"cached_tokens", u.cached}}},
              {"completion_tokens_details", {{"reasoning_tokens", u.reasoning}}},
              {"prompt_cache_hit_tokens", u.cached},
              {"prompt_cache_miss_tokens", u.prompt - u.cached}};
}

namespace {
json bytes_of(const std::string& s) {
  json a = json::array();
  for (unsigned char c : s) a.push_back(int(c));
  return a;
}
}  // namespace

json chat_logprobs_json(const std::vector<LogprobEntry>& entries) {
  json content = json::array();
  for (const auto& e : entries) {
    json top = json::array();
    for (const auto& [t, lp] : e.top) top.push_back({{"token", t}, {"logprob", lp}, {"bytes", bytes_of(t)}});
    content.push_back({{"token", e.token}, {"logprob", e.logprob}, {"bytes", bytes_of(e.token)}, {"top_logprobs", top}});
  }
  return json{{"content", content}};
}

json completion_logprobs_json(const std::vector<LogprobEntry>& entries) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (const auto& e : entries) {
    tokens.push_back(e.token);
    lps.push_back(e.logprob);
    json t = json::object();
    for (const auto& [s, lp] : e.top) t[s] = lp;
    tops.push_back(t);
    offs.push_back(e.text_offset);
  }
  return json{{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

std::string sse(const json& j) {
  return "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
}

}  // namespace fathom::server
