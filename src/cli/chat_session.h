#pragma once
// One conversation with a model: the chat template renders the whole history each turn,
// the KV cache keeps the shared prefix, and the reply streams out with R1-style reasoning
// (<think>…</think>) kept apart from the answer.
#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "model/model.h"
#include "runtime/generate.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom::cli {

struct ChatOpts {
  GenerateOpts gen;
  int64_t ctx = 4096;
  std::string system;
  bool color = false;           // dim the reasoning (on a terminal)
  bool show_reasoning = true;
  const std::atomic<bool>* interrupt = nullptr;  // set by Ctrl-C: stop this reply
};

struct TurnStats {
  int64_t prompt_tokens = 0, reused_tokens = 0, generated = 0;
  double seconds = 0;
  bool interrupted = false;
  SpecStats spec;  // speculative decoding (steps == 0 when off)
};

class ChatSession {
 public:
  // The tokenizer and the chat template come from tokenizer_dir (usually model_dir).
  ChatSession(const std::string& model_dir, const std::string& tokenizer_dir, const LoadOpts& load, ChatOpts opts);
  // Adds the user's message, streams the reply to stdout, and keeps it in the history.
  TurnStats turn(const std::string& user_text);
  const ModelConfig& config() const { return model_->config(); }

 private:
  std::unique_ptr<Model> model_;
  Tokenizer tok_;
  ChatTemplate tmpl_;
  ChatOpts opts_;
  Session session_;
  nlohmann::ordered_json messages_ = nlohmann::ordered_json::array();
};

}  // namespace fathom::cli
