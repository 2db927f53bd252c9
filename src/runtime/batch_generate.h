#pragma once
// Offline batched generation: many prompts, each with a group of completions, through one
// Runner (GRPO's rollouts, evaluation). Every prompt is read once: a prefill-only sequence
// puts its KV in a slot, the slot's prompt KV is copied into the other slots of its group, and
// the group's sequences then recompute only the last prompt token. Groups are admitted as
// slots free up, so short completions make room while long ones finish (continuous batching).
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace fathom {

struct BatchGenOpts {
  int64_t group = 1;           // completions per prompt
  int64_t max_new_tokens = 256;
  SamplingParams sampling;     // completion j of prompt i samples with seed mix(seed, i * group + j)
  std::vector<int32_t> stop_ids;
  int64_t max_slots = 64;      // sequences decoded together (raised to `group` if smaller)
  int64_t prefill_chunk = 256;
  AttnMode attn = AttnMode::Absorbed;
};

struct BatchGenStats {
  int64_t prompt_tokens = 0;  // computed, once per prompt
  int64_t generated = 0;      // completion tokens
  int64_t steps = 0;          // batched forwards
  double seconds = 0;
};

struct Completion {
  std::vector<int32_t> ids;   // the generated tokens, a stop id included when one ended it
  bool stopped = false;       // ended by a stop id (else by max_new_tokens)
};

// [prompt][group] completions. Prompts are validated like any request (PromptError).
std::vector<std::vector<Completion>> generate_groups(Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                     const BatchGenOpts& opts, BatchGenStats* stats = nullptr);

}  // namespace fathom
