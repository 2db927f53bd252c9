#include "runtime/runner.h"

#include <algorithm>

namespace fathom {

Runner::Runner(Model& model, int64_t n_slots, int64_t max_ctx)
    : model_(model), vocab_(model.config().vocab_size), cache_(model.make_cache(n_slots, max_ctx)),
      sched_(n_slots, max_ctx) {
  batch_.reserve(size_t(n_slots));
  seqs_.reserve(size_t(n_slots));
  logits_.resize(size_t(n_slots * vocab_));
  produced_.reserve(size_t(n_slots));
}

const std::vector<Produced>& Runner::step(const StepOpts& o) {
  produced_.clear();
  sched_.schedule(o, batch_, seqs_);
  if (batch_.empty()) return produced_;
  ForwardOpts fo;
  fo.attn = o.attn;
  fo.trace = o.trace;
  model_.forward(batch_, cache_, logits_.data(), fo);
  ++steps_;
  for (size_t i = 0; i < batch_.size(); ++i) {
    Sequence& s = *seqs_[i];
    s.pos += batch_[i].n;
    if (s.pos < s.n_prompt) continue;  // more prompt to read
    if (s.generated >= s.max_tokens) {  // asked to read the prompt only
      sched_.finish(s, FinishReason::Length);
      continue;
    }
    sample(s, logits_.data() + int64_t(i) * vocab_);
    produced_.push_back(Produced{&s, s.last_token()});
    if (std::find(s.stop_ids.begin(), s.stop_ids.end(), s.last_token()) != s.stop_ids.end())
      sched_.finish(s, FinishReason::Stop);
    else if (s.generated >= s.max_tokens || int64_t(s.tokens.size()) >= sched_.max_ctx())
      sched_.finish(s, FinishReason::Length);
  }
  return produced_;
}

void Runner::sample(Sequence& s, float* row) {
  const int32_t tok = s.sampler.sample(row);
  s.sampler.accept(tok);
  s.tokens.push_back(tok);  // capacity reserved when the sequence was made
  ++s.generated;
  if (s.top_logprobs < 0) return;
  // The k best alternatives by insertion into a short sorted list (k <= 20).
  const std::vector<float>& lp = s.sampler.last_logprobs();
  s.last_logprob = lp[size_t(tok)];
  s.last_top.clear();
  const size_t k = size_t(s.top_logprobs);
  for (int64_t v = 0; v < vocab_ && k > 0; ++v) {
    const float x = lp[size_t(v)];
    if (s.last_top.size() == k && x <= s.last_top.back().logprob) continue;
    const auto at = std::find_if(s.last_top.begin(), s.last_top.end(),
                                 [&](const TokenLogprob& t) { return x > t.logprob; }) - s.last_top.begin();
    if (s.last_top.size() == k) s.last_top.pop_back();  // stays within the reserved capacity
    s.last_top.insert(s.last_top.begin() + at, TokenLogprob{int32_t(v), x});
  }
}

}  // namespace fathom
