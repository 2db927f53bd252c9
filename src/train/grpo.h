#pragma once
// `fathom grpo`: Group Relative Policy Optimization as in DeepSeekMath and DeepSeek-R1. Each
// step samples a group of G completions for each of P prompts from the current policy with
// fathom's batched engine (a group reads its prompt once and shares its KV), scores them with
// rule rewards (the task's format and accuracy checks) or an outside program, turns rewards
// into group-relative advantages, and takes μ AdamW updates of the clipped surrogate with a
// k3 KL penalty to the frozen starting model (grpo_loss.h). The CLI only fills GrpoOpts.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tasks/arith.h"
#include "train/grpo_loss.h"
#include "train/optim.h"
#include "train/reward_cmd.h"

namespace fathom::train {

struct GrpoOpts {
  std::string model;      // the starting policy, and the frozen reference (HF layout)
  std::string tokenizer;  // default: the model directory
  uint64_t seed = 0;

  // Prompts: nano-R1's arithmetic task (problem step*P + i of task_seed), or a JSONL file of
  // {"prompt": ..., "answer": ...} objects (other keys go to --reward-cmd), visited in a
  // seeded shuffled order.
  std::string prompts;
  uint64_t task_seed = 1;
  tasks::DifficultyRange difficulty;

  // Sampling.
  int64_t prompts_per_step = 16;  // P
  int64_t group = 8;              // G
  int64_t max_new_tokens = 256;
  float temperature = 1.0f, top_p = 1.0f;

  // Rewards: accuracy + format_weight · format (built in), or the outside program.
  double format_weight = 0.1;
  RewardCmdOpts reward_cmd;  // command empty: built in

  // Optimization.
  int64_t steps = 100;
  int64_t mu = 1;               // updates per sampled batch
  int64_t micro_batch = 32;     // completions per forward/backward pass
  AdamWConfig adam;
  Schedule schedule;
  double clip = 1.0;            // global gradient-norm clip
  GrpoLossOpts loss;
  bool scale_std = true;        // false: Dr. GRPO's advantages (no std division)
  bool drop_equal = false;      // leave out groups whose rewards are all equal (no signal)
  double bias_update = 0;       // γ of the router-bias rule during GRPO (0: routers' biases frozen)
  bool bf16 = false;            // bf16 matmul inputs in training passes

  // Evaluation on held-out problems (arithmetic task only): every eval_every steps and at the end.
  int64_t eval_every = 0;
  int64_t eval_n = 200;
  uint64_t eval_seed = 1000003;

  // Output.
  std::string out;              // the final model; checkpoints go to <out>-checkpoints/step-N
  std::string save_dtype = "bf16";
  int64_t save_every = 0;
  std::string resume;           // a checkpoint directory to continue from
  std::string log;              // metrics JSONL; the plots go beside it (.svg)
  bool json = false;
  int threads = 0;
};

void run_grpo(const GrpoOpts& o);

// One prompt of a --prompts file, with what its rewards are checked against.
struct PromptItem {
  std::string prompt, answer;
  std::optional<int64_t> value;  // the answer as an integer (the built-in accuracy reward)
  nlohmann::json extra = nlohmann::json::object();  // the line's other keys, passed to --reward-cmd
};

// Reads a --prompts file: one JSON object per line with a string "prompt" and optionally an
// "answer" (a string, or any JSON value, kept as its text) and other keys; blank lines are
// skipped. `need_value`: every answer must be an integer (the built-in accuracy reward).
// Throws fathom::Error naming the file and line for anything else, or for a file with no prompts.
std::vector<PromptItem> read_prompts(const std::string& path, bool need_value);

}  // namespace fathom::train
