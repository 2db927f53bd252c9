#include "server/api.h"

#include <chrono>
#include <ctime>
#include <regex>

#include <fmt/format.h>

#include "core/error.h"
#include "server/auth.h"
#include "server/text_stream.h"
#include "template/chat_template.h"
#include "template/strings.h"
#include "tokenizer/tokenizer.h"

namespace fathom::server {

struct Api::Gen {
  ParsedRequest pr;
  std::string id;
  int64_t created = 0;
  std::vector<int32_t> prompt;
  bool start_in_reasoning = false;
  std::string content, reasoning;
  std::vector<LogprobEntry> logprobs;  // non-streaming: all; streaming: not yet sent
  std::vector<int32_t> ids;            // generated ids: non-streaming: all; streaming: not yet sent
  size_t text_chars = 0;               // completions logprobs: characters decoded so far
  Usage usage;
  std::string finish;
};

Api::Api(ApiDeps deps) : d_(std::move(deps)), encoder_(*d_.tokenizer), created_(int64_t(std::time(nullptr))) {
  if (d_.chat_template) {
    const std::regex tools_var(R"(\btools\b)");
    caps_.tools = std::regex_search(d_.chat_template->source(), tools_var);
  }
  if (auto e = d_.tokenizer->eos_id()) stop_ids_.push_back(*e);
}

void Api::count(int status) {
  std::lock_guard lk(mu_);
  ++by_status_[status];
}

void Api::send_json(http::Responder& resp, int status, const json& j) {
  count(status);
  resp.respond(status, "application/json", j.dump(-1, ' ', false, json::error_handler_t::replace));
}

void Api::send_error(http::Responder& resp, const ApiError& e) {
  send_json(resp, e.status, error_body(e.status, e.what(), e.param, e.code));
}

void Api::handle(http::Request& req, http::Responder& resp) {
  try {
    const std::string& p = req.path;
    if (p == "/health") {
      if (req.method != "GET") throw ApiError(405, "use GET");
      return send_json(resp, 200, {{"status", "ok"}});
    }
    if (!d_.api_key.empty()) {
      if (!bearer_matches(req.header("authorization"), d_.api_key))
        throw ApiError(401, "missing or wrong API key (send 'Authorization: Bearer KEY')", "", "invalid_api_key");
    }
    if (p == "/metrics") {
      if (req.method != "GET") throw ApiError(405, "use GET");
      count(200);
      return resp.respond(200, "text/plain; version=0.0.4", metrics());
    }
    const json model = {{"id", d_.model_id}, {"object", "model"}, {"created", created_}, {"owned_by", "fathom"}};
    if (p == "/v1/models") {
      if (req.method != "GET") throw ApiError(405, "use GET");
      return send_json(resp, 200, {{"object", "list"}, {"data", json::array({model})}});
    }
    if (p.rfind("/v1/models/", 0) == 0) {
      if (p.substr(11) != d_.model_id)
        throw ApiError(404, fmt::format("the model '{}' does not exist", p.substr(11)), "model", "model_not_found");
      return send_json(resp, 200, model);
    }
    if (p == "/v1/chat/completions" || p == "/v1/completions") {
      if (req.method != "POST") throw ApiError(405, "use POST");
      return generate(req, resp, p == "/v1/chat/completions");
    }
    throw ApiError(404, fmt::format("no route for {} {}", req.method, p));
  } catch (const ApiError& e) {
    send_error(resp, e);
  } catch (const std::exception& e) {
    send_error(resp, ApiError(500, fmt::format("internal error: {}", e.what())));
  }
}

void Api::generate(http::Request& req, http::Responder& resp, bool chat) {
  const int64_t max_ctx = d_.engine->opts().max_ctx;
  // A text prompt too long by its bytes alone is refused before its JSON is parsed.
  if (const auto bytes = chat ? std::nullopt : top_level_string_bytes(req.body, "prompt")) {
    try {
      encoder_.check_bytes(*bytes, max_ctx);
    } catch (const PromptError& e) {
      throw ApiError(400, e.what(), "prompt", "context_length_exceeded");
    }
  }
  Gen g;
  {
    // The body and its JSON are freed as soon as the request is parsed, and the prompt's
    // string moves from the JSON to the request and on to the template: a long prompt would
    // otherwise be held several times over while it is tokenized and generated from.
    json body = parse_body(req.body);
    std::string().swap(req.body);
    g.pr = chat ? parse_chat_request(std::move(body), caps_) : parse_completion_request(std::move(body));
  }
  const Tokenizer& tok = *d_.tokenizer;
  const char* prompt_param = chat ? "messages" : "prompt";
  try {
    if (chat) {
      if (!d_.chat_template) throw ApiError(400, "this model has no chat template; use /v1/completions");
      std::string text;
      try {
        text = d_.chat_template->render(std::move(g.pr.messages), true, g.pr.template_extra);
      } catch (const std::exception& e) {
        throw ApiError(400, fmt::format("the chat template failed on these messages: {}", e.what()), "messages");
      }
      g.start_in_reasoning = prompt_opens_reasoning(text);
      g.prompt = encoder_.encode(text, max_ctx);
    } else if (!g.pr.prompt_ids.empty()) {
      g.prompt = g.pr.prompt_ids;
    } else {
      // As HF tokenizers encode with add_special_tokens: a text prompt starts with BOS
      // (DeepSeek, Llama-3) when the tokenizer has one. Token-id prompts are used as given.
      g.prompt = encoder_.encode(g.pr.prompt_text, max_ctx);
      if (auto bos = tok.bos_id(); bos && (g.prompt.empty() || g.prompt.front() != *bos))
        g.prompt.insert(g.prompt.begin(), *bos);
    }
  } catch (const PromptError& e) {
    throw ApiError(400, e.what(), prompt_param, "context_length_exceeded");
  } catch (const fathom::Error& e) {
    throw ApiError(400, e.what(), prompt_param);
  }
  try {
    validate_prompt(g.prompt, tok.vocab_size(), max_ctx);
  } catch (const PromptError& e) {
    throw ApiError(400, e.what(), prompt_param, e.kind == PromptError::TooLong ? "context_length_exceeded" : "");
  }
  const int64_t n = int64_t(g.prompt.size());
  g.id = fmt::format("{}-{:x}{:08x}", chat ? "chatcmpl" : "cmpl", created_, next_id_.fetch_add(1));
  g.created = int64_t(std::time(nullptr));
  g.usage.prompt = n;
  run(g, resp);
}

void Api::run(Gen& g, http::Responder& resp) {
  const ParsedRequest& pr = g.pr;
  const bool chat = pr.chat;
  GenRequest gr;
  gr.prompt = g.prompt;
  gr.sampling = pr.sampling;
  gr.max_tokens = pr.max_tokens.value_or(d_.engine->opts().max_ctx);
  gr.stop_ids = stop_ids_;
  gr.top_logprobs = pr.top_logprobs;
  gr.draft = d_.engine->opts().max_draft;  // off for requests that ask for logprobs
  std::shared_ptr<GenStream> st;
  try {
    st = d_.engine->submit(std::move(gr));
  } catch (const QueueFull& e) {
    throw ApiError(429, "the server is busy: all slots are taken and the queue is full; retry later");
  } catch (const fathom::Error& e) {
    throw ApiError(400, e.what(), chat ? "messages" : "prompt");
  }

  const Tokenizer& tok = *d_.tokenizer;
  IncrementalDecoder dec(tok, /*skip_special=*/true);
  TextStream ts({pr.stops, chat, g.start_in_reasoning});
  const json base = {{"id", g.id},
                     {"object", chat ? "chat.completion.chunk" : "text_completion"},
                     {"created", g.created},
                     {"model", d_.model_id},
                     {"system_fingerprint", "fathom"}};
  auto chunk = [&](json delta_or_text, const json& finish) {
    json c = base;
    json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish}};
    if (chat) choice["delta"] = std::move(delta_or_text);
    else choice["text"] = std::move(delta_or_text);
    if (pr.top_logprobs >= 0 && !g.logprobs.empty()) {
      choice["logprobs"] = chat ? chat_logprobs_json(g.logprobs) : completion_logprobs_json(g.logprobs);
      g.logprobs.clear();
    }
    if (pr.return_token_ids) {
      choice["token_ids"] = g.ids;
      g.ids.clear();
    }
    c["choices"] = json::array({choice});
    if (pr.include_usage) c["usage"] = nullptr;
    return sse(c);
  };
  bool alive = true;
  if (pr.stream) {
    count(200);
    alive = resp.start_stream(200, "text/event-stream");
    if (alive && chat) alive = resp.write(chunk(json{{"role", "assistant"}, {"content", ""}}, nullptr));
  }
  auto deliver = [&](const TextDelta& d) {
    g.content += d.content;
    g.reasoning += d.reasoning;
    if (!pr.stream || d.empty() || !alive) return;
    json delta = json::object();
    if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
    if (!d.content.empty()) delta["content"] = d.content;
    alive = resp.write(chat ? chunk(delta, nullptr) : chunk(d.content, nullptr));
  };

  for (;;) {
    GenEvent ev;
    const bool got = st->next(ev, std::chrono::milliseconds(100));
    if (!alive || resp.client_gone()) {
      st->cancel();  // the engine frees the slot at its next step
      disconnects_.fetch_add(1);
      return;
    }
    if (!got) continue;
    if (ev.kind == GenEvent::Token) {
      ++g.usage.completion;
      if (pr.return_token_ids) g.ids.push_back(ev.token);
      if (ts.in_reasoning()) ++g.usage.reasoning;
      const std::string piece = dec.push(ev.token);  // "" for a special token
      if (pr.top_logprobs >= 0) {
        LogprobEntry e;
        e.token = tok.decode(std::span<const int32_t>(&ev.token, 1));
        e.logprob = ev.logprob;
        for (const auto& t : ev.top) e.top.emplace_back(tok.decode(std::span<const int32_t>(&t.id, 1)), t.logprob);
        e.text_offset = g.text_chars;
        g.logprobs.push_back(std::move(e));
      }
      g.text_chars += jinja::utf8_length(piece);  // OpenAI's offsets count characters
      const TextDelta d = ts.push(piece);
      deliver(d);
      if (ts.stopped()) {
        st->cancel();
        g.finish = "stop";
        break;
      }
      continue;
    }
    if (ev.reason == FinishReason::Error || ev.reason == FinishReason::Cancelled) {
      const ApiError e(ev.reason == FinishReason::Error ? 500 : 503,
                       ev.reason == FinishReason::Error ? "generation failed: " + ev.error : "the server is shutting down");
      if (pr.stream) resp.write(sse(error_body(e.status, e.what())));
      else send_error(resp, e);
      return;
    }
    g.finish = finish_reason_name(ev.reason);
    TextDelta d = ts.push(dec.flush());
    if (!ts.stopped()) {
      const TextDelta rest = ts.flush();
      d.content += rest.content;
      d.reasoning += rest.reasoning;
    } else {
      g.finish = "stop";
    }
    deliver(d);
    break;
  }
  g.usage.cached = st->cached_tokens();

  if (pr.stream) {
    if (!alive) return;
    resp.write(chunk(chat ? json::object() : json(""), g.finish));
    if (pr.include_usage) {
      json u = base;
      u["choices"] = json::array();
      u["usage"] = usage_json(g.usage);
      resp.write(sse(u));
    }
    resp.write("data: [DONE]\n\n");
    return;
  }
  json choice = {{"index", 0}, {"finish_reason", g.finish}, {"logprobs", nullptr}};
  if (pr.top_logprobs >= 0)
    choice["logprobs"] = chat ? chat_logprobs_json(g.logprobs) : completion_logprobs_json(g.logprobs);
  if (pr.return_token_ids) choice["token_ids"] = g.ids;
  if (chat) {
    json msg = {{"role", "assistant"}, {"content", g.content}};
    if (!g.reasoning.empty() || g.start_in_reasoning) msg["reasoning_content"] = g.reasoning;
    choice["message"] = msg;
  } else {
    choice["text"] = g.content;
  }
  json out = base;
  out["object"] = chat ? "chat.completion" : "text_completion";
  out["choices"] = json::array({choice});
  out["usage"] = usage_json(g.usage);
  send_json(resp, 200, out);
}

std::string Api::metrics() const {
  const EngineStats s = d_.engine->stats();
  std::string o;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    o += fmt::format("# HELP {} {}\n# TYPE {} {}\n{} {}\n", name, help, name, type, name, v);
  };
  metric("fathom_requests_total", "counter", "Generation requests admitted to the engine.", double(s.requests));
  {
    std::lock_guard lk(mu_);
    o += "# HELP fathom_http_responses_total HTTP answers by status.\n# TYPE fathom_http_responses_total counter\n";
    for (const auto& [code, n] : by_status_) o += fmt::format("fathom_http_responses_total{{code=\"{}\"}} {}\n", code, n);
  }
  metric("fathom_client_disconnects_total", "counter", "Requests cancelled because the client went away.",
         double(disconnects_.load()));
  metric("fathom_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", double(s.prompt_tokens));
  metric("fathom_prompt_cache_hit_tokens_total", "counter", "Prompt tokens served from the prefix cache.",
         double(s.cached_prompt_tokens));
  metric("fathom_generation_tokens_total", "counter", "Completion tokens generated.", double(s.completion_tokens));
  metric("fathom_generation_tokens_per_second", "gauge", "Completion tokens per second over the last seconds.",
         s.tokens_per_s);
  metric("fathom_engine_steps_total", "counter", "Batched forward passes.", double(s.steps));
  metric("fathom_speculative_draft_tokens_total", "counter", "Tokens the MTP module drafted.",
         double(s.spec.drafted));
  metric("fathom_speculative_accepted_tokens_total", "counter", "Drafted tokens the model accepted.",
         double(s.spec.accepted));
  metric("fathom_speculative_acceptance_ratio", "gauge", "Accepted share of the drafted tokens since start.",
         s.spec.acceptance());
  metric("fathom_speculative_tokens_per_step", "gauge",
         "Tokens a sequence gains per step that verifies drafts (accepted + 1), since start.", s.spec.tokens_per_step());
  metric("fathom_queue_depth", "gauge", "Requests waiting for a KV slot.", double(s.queued));
  metric("fathom_running_sequences", "gauge", "Sequences in the running batch.", double(s.running));
  metric("fathom_kv_cache_slots", "gauge", "KV cache slots (max batch).", double(s.slots));
  metric("fathom_kv_cache_capacity_tokens", "gauge", "Tokens the KV pool holds.", double(s.slots * s.max_ctx));
  metric("fathom_kv_cache_used_tokens", "gauge", "KV tokens held by running sequences.", double(s.kv_tokens_used));
  metric("fathom_kv_cache_usage_ratio", "gauge", "Used share of the KV pool.",
         double(s.kv_tokens_used) / double(std::max<int64_t>(1, s.slots * s.max_ctx)));
  metric("fathom_kv_cache_bytes", "gauge", "Bytes of the KV pool.", double(d_.engine->kv_bytes()));
  metric("fathom_weight_bytes", "gauge", "Bytes of model weights in memory.", double(d_.weight_bytes));
  return o;
}

}  // namespace fathom::server
