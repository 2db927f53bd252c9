#include "runtime/sequence.h"

#include <algorithm>

namespace fathom {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
    default: return "none";
  }
}

void validate_prompt(const std::vector<int32_t>& prompt, int64_t vocab, int64_t max_ctx) {
  const int64_t n = int64_t(prompt.size());
  if (n == 0) throw PromptError(PromptError::Empty, "the prompt is empty");
  if (n >= max_ctx)
    throw PromptError(PromptError::TooLong,
                      fmt::format("the prompt has {} tokens but the context holds {} tokens (prompt and completion "
                                  "together); shorten the prompt",
                                  n, max_ctx));
  for (int32_t t : prompt)
    if (t < 0 || t >= vocab)
      throw PromptError(PromptError::BadToken, fmt::format("token id {} is outside the vocabulary", t));
}

Sequence::Sequence(GenRequest req, int64_t vocab, int64_t max_ctx)
    : tokens(std::move(req.prompt)), n_prompt(int64_t(tokens.size())),
      max_tokens(std::clamp<int64_t>(req.max_tokens, 0, std::max<int64_t>(0, max_ctx - n_prompt))),
      stop_ids(std::move(req.stop_ids)), top_logprobs(std::min(req.top_logprobs, 20)),
      sampler(req.sampling, vocab) {
  tokens.reserve(size_t(n_prompt + max_tokens));
  sampler.set_want_logprobs(top_logprobs >= 0);
  if (top_logprobs > 0) last_top.reserve(size_t(top_logprobs));
  // Tokens accepted in one step are reported together, so per-token logprobs turn drafting off.
  draft = top_logprobs >= 0 ? 0 : std::max<int64_t>(0, req.draft);
  if (draft > 0) {
    drafts.reserve(size_t(draft));
    chunk.reserve(size_t(draft + 1));
    if (!sampler.greedy()) draft_probs.resize(size_t(draft * vocab));
  }
}

}  // namespace fathom
