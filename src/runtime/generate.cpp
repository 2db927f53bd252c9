#include "runtime/generate.h"

#include <algorithm>

#include "core/error.h"

namespace fathom {

Session::Session(Model& model, int64_t max_ctx)
    : model_(model), cache_(model.make_cache(1, max_ctx)),
      logits_(static_cast<size_t>(model.config().vocab_size)) {}

std::vector<int32_t> Session::generate(const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                                       const std::function<bool(int32_t)>& on_token) {
  const int64_t P = int64_t(prompt.size());
  if (P == 0) fail("generate: the prompt is empty");
  if (P >= cache_.max_ctx())
    fail("the prompt has {} tokens but the context holds {}", P, cache_.max_ctx());
  ForwardOpts fo;
  fo.attn = opts.attn;
  // Reuse the cached prefix, but always recompute the last prompt token for its logits.
  int64_t keep = 0;
  while (keep < int64_t(tokens_.size()) && keep < P - 1 && tokens_[size_t(keep)] == prompt[size_t(keep)]) ++keep;
  reused_ = keep;
  tokens_.assign(prompt.begin(), prompt.end());
  const int64_t step = std::max<int64_t>(1, opts.prefill_chunk);
  for (int64_t p = keep; p < P; p += step) {
    const int64_t n = std::min<int64_t>(step, P - p);
    model_.forward({SeqChunk{0, p, prompt.data() + p, n, false}}, cache_, logits_.data(), fo);
  }
  Sampler sampler(opts.sampling, model_.config().vocab_size);
  std::vector<int32_t> out;
  const int64_t limit = std::min(opts.max_new_tokens, cache_.max_ctx() - P);
  for (int64_t i = 0; i < limit; ++i) {
    const int32_t tok = sampler.sample(logits_.data());
    sampler.accept(tok);
    out.push_back(tok);
    if (on_token && !on_token(tok)) break;
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), tok) != opts.stop_ids.end()) break;
    if (i + 1 == limit) break;
    model_.forward({SeqChunk{0, int64_t(tokens_.size()), &tok, 1, false}}, cache_, logits_.data(), fo);
    tokens_.push_back(tok);
  }
  return out;
}

std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                              const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) fail("generate: the prompt is empty");
  Session s(model, int64_t(prompt.size()) + opts.max_new_tokens);
  return s.generate(prompt, opts, on_token);
}

}  // namespace fathom
