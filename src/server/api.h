#pragma once
// The HTTP routes of `fathom serve`: OpenAI/DeepSeek-compatible chat and text completions
// (streamed as server-sent events or not), models, health and Prometheus metrics. It talks
// to the runtime Engine in token ids and owns the text side (template, tokenizer, stop
// strings, reasoning split).
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "runtime/engine.h"
#include "server/http.h"
#include "server/openai.h"
#include "server/prompt_limit.h"

namespace fathom {
class Tokenizer;
struct ChatTemplate;
}  // namespace fathom

namespace fathom::server {

struct ApiDeps {
  Engine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;
  const ChatTemplate* chat_template = nullptr;  // null: /v1/chat/completions answers 400
  std::string model_id;
  std::string api_key;        // empty: no auth
  size_t weight_bytes = 0;    // for /metrics
};

class Api {
 public:
  explicit Api(ApiDeps deps);
  void handle(http::Request& req, http::Responder& resp);

 private:
  struct Gen;
  void generate(http::Request& req, http::Responder& resp, bool chat);
  void run(Gen& g, http::Responder& resp);
  void send_json(http::Responder& resp, int status, const json& j);
  void send_error(http::Responder& resp, const ApiError& e);
  std::string metrics() const;
  void count(int status);

  ApiDeps d_;
  PromptEncoder encoder_;
  TemplateCaps caps_;
  std::vector<int32_t> stop_ids_;
  int64_t created_;
  std::atomic<uint64_t> next_id_{1};
  mutable std::mutex mu_;
  std::map<int, int64_t> by_status_;  // HTTP answers by status, for /metrics
  std::atomic<int64_t> disconnects_{0};
};

}  // namespace fathom::server
