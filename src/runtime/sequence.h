#pragma once
// One sequence being generated: its request, its tokens and where it stands in its KV slot.
// The scheduler (scheduler.h) places sequences in slots and picks their chunks; the runner
// (runner.h) steps them. Engine, Session and bench all generate through these.
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "runtime/sampler.h"

namespace fathom {

struct GenRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_tokens = 16;           // clipped to what the context leaves; 0: read the prompt only
  std::vector<int32_t> stop_ids;     // finish (reason Stop) after emitting one of these
  int top_logprobs = -1;             // -1: no logprobs; 0..20: that many alternatives
  // Speculative decoding: tokens the model's MTP module proposes per step (0: off). The
  // output is the same either way (greedy: the same ids; sampling: the same distribution).
  // Off when logprobs are asked for.
  int64_t draft = 0;
};

enum class FinishReason { None, Stop, Length, Cancelled, Error };

const char* finish_reason_name(FinishReason r);

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
};

// A prompt that cannot be generated from. `kind` lets the server pick its error code.
struct PromptError : Error {
  enum Kind { Empty, TooLong, BadToken } kind;
  PromptError(Kind k, const std::string& msg) : Error(msg), kind(k) {}
};

// Throws PromptError when the prompt is empty, leaves no room in a context of max_ctx tokens
// for a completion, or holds an id outside 0..vocab-1.
void validate_prompt(const std::vector<int32_t>& prompt, int64_t vocab, int64_t max_ctx);

struct Sequence {
  // Allocates everything the sequence needs (tokens for prompt + completion, the sampler's
  // buffers), so stepping it never allocates. max_tokens is clipped to max_ctx.
  Sequence(GenRequest req, int64_t vocab, int64_t max_ctx);
  virtual ~Sequence() = default;

  std::vector<int32_t> tokens;  // prompt, then generated; tokens[0..pos) are in the slot's KV
  int64_t n_prompt = 0;
  int64_t max_tokens = 0;
  std::vector<int32_t> stop_ids;
  int top_logprobs = -1;
  Sampler sampler;

  int64_t slot = -1;            // KV slot while running
  int64_t pos = 0;              // tokens whose KV is in the slot
  int64_t cached = 0;           // prompt tokens reused from the prefix cache at admission
  int64_t generated = 0;
  FinishReason finish = FinishReason::None;
  std::string error;            // reason Error

  // The last generated token's log-probability and its best alternatives (best first),
  // when top_logprobs >= 0.
  float last_logprob = 0;
  std::vector<TokenLogprob> last_top;

  // Speculative decoding (draft > 0): the slot's MTP cache holds rows [0, mtp_pos), and
  // `drafts` are the tokens proposed for the next step, verified with the last token in
  // `chunk` ([1 + draft]). draft_probs: [draft, vocab] the distribution each was drawn from
  // (sampling only).
  int64_t draft = 0;
  int64_t mtp_pos = 0;
  std::vector<int32_t> drafts;
  std::vector<int32_t> chunk;
  std::vector<float> draft_probs;
  int64_t drafted = 0, accepted = 0, verify_steps = 0;  // proposals, those accepted, steps verifying them

  bool running() const { return slot >= 0; }
  bool finished() const { return finish != FinishReason::None; }
  int32_t last_token() const { return tokens.back(); }
};

}  // namespace fathom
