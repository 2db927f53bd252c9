#include "runtime/generate.h"

#include <algorithm>

#include "core/error.h"

namespace fathom {

Session::Session(Model& model, int64_t max_ctx) : runner_(model, 1, max_ctx) {}

std::vector<int32_t> Session::generate(const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                                       const std::function<bool(int32_t)>& on_token) {
  validate_prompt(prompt, runner_.vocab(), max_ctx());
  GenRequest req;
  req.prompt = prompt;
  req.sampling = opts.sampling;
  req.max_tokens = opts.max_new_tokens;
  req.stop_ids = opts.stop_ids;
  if (opts.draft > 0) {
    if (!runner_.enable_speculation(opts.draft))
      fail("speculative decoding needs a model with a multi-token prediction (MTP) module");
    req.draft = opts.draft;
  }
  Sequence seq(std::move(req), runner_.vocab(), max_ctx());
  Scheduler& sched = runner_.scheduler();
  sched.admit(seq);
  reused_ = seq.cached;
  StepOpts so;
  so.prefill_chunk = so.prefill_budget = std::max<int64_t>(1, opts.prefill_chunk);
  so.attn = opts.attn;
  std::vector<int32_t> out;
  out.reserve(size_t(seq.max_tokens));
  try {
    while (seq.running()) {
      for (const Produced& p : runner_.step(so)) {
        // A step can emit several tokens; none reach the caller after it stops.
        if (seq.finish == FinishReason::Cancelled) break;
        out.push_back(p.token);
        if (on_token && !on_token(p.token)) {
          if (seq.running()) sched.finish(seq, FinishReason::Cancelled);
          seq.finish = FinishReason::Cancelled;
        }
      }
    }
    spec_ = SpecStats{seq.drafted, seq.accepted, seq.verify_steps};
  } catch (...) {
    sched.finish(seq, FinishReason::Error);  // frees the slot before `seq` goes away
    throw;
  }
  return out;
}

std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                              const std::function<bool(int32_t)>& on_token) {
  const int64_t ctx = int64_t(prompt.size()) + std::max<int64_t>(0, opts.max_new_tokens);
  validate_prompt(prompt, model.config().vocab_size, ctx);  // before allocating the cache
  Session s(model, ctx);
  return s.generate(prompt, opts, on_token);
}

}  // namespace fathom
