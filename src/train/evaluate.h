#pragma once
// Accuracy of a model on nano-R1's arithmetic task (docs/nano-r1-task.md): N fresh problems
// from a seed, answered greedily in one batched run, graded by the task's checker. With
// think off, the prompt forces an empty think block, so the model must answer at once.
#include <cstdint>
#include <string>
#include <vector>

#include "model/model.h"
#include "tasks/arith.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom::train {

struct EvalOpts {
  int64_t n = 500;
  uint64_t seed = 0;
  tasks::DifficultyRange difficulty;
  bool think = true;
  int64_t max_new_tokens = 256;
  int64_t max_slots = 64;  // sequences decoded together
  AttnMode attn = AttnMode::Absorbed;
};

// One problem's completion, as graded (the think block the prompt forced included).
struct EvalItem {
  tasks::Problem problem;
  std::string completion;
  tasks::Graded graded;
};

struct EvalResult {
  int64_t n = 0, correct = 0, formatted = 0;
  std::vector<EvalItem> items;  // [n] in problem order
  std::vector<int64_t> n_by_level, correct_by_level;  // [kMaxDifficulty + 1], by difficulty
  int64_t generated = 0;  // completion tokens
  double seconds = 0;
  double accuracy() const { return n ? double(correct) / double(n) : 0.0; }
};

// The text a chat model is prompted with for a user message: the template's rendering with
// the generation prompt (which for R1 opens the thinking).
std::string chat_prompt(const ChatTemplate& tmpl, const std::string& user);
// What the no-thinking ablation appends to that prompt, so that the think block is closed
// empty: "\n</think>\n\n" after a prompt that ends in "<think>\n", else the whole block.
std::string no_think_suffix(const std::string& prompt);
// The stop ids of a model and tokenizer: the tokenizer's EOS and the config's EOS ids.
std::vector<int32_t> stop_ids(const Tokenizer& tok, const ModelConfig& cfg);

EvalResult evaluate_arith(Model& model, const Tokenizer& tok, const ChatTemplate& tmpl, const EvalOpts& o);

}  // namespace fathom::train
