#include "runtime/generate.h"

#include <algorithm>

#include "core/error.h"

namespace fathom {

std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                              const std::function<bool(int32_t)>& on_token) {
  if (prompt.empty()) fail("generate: the prompt is empty");
  const int64_t V = model.config().vocab_size;
  const int64_t ctx = int64_t(prompt.size()) + opts.max_new_tokens;
  KvCache cache = model.make_cache(1, ctx);
  Sampler sampler(opts.sampling, V);
  std::vector<float> logits(static_cast<size_t>(V));  // [V]
  ForwardOpts fo;
  fo.attn = opts.attn;
  const int64_t step = std::max<int64_t>(1, opts.prefill_chunk);
  for (int64_t p = 0; p < int64_t(prompt.size()); p += step) {
    const int64_t n = std::min<int64_t>(step, int64_t(prompt.size()) - p);
    model.forward({SeqChunk{0, p, prompt.data() + p, n, false}}, cache, logits.data(), fo);
  }
  std::vector<int32_t> out;
  int64_t pos = int64_t(prompt.size());
  for (int64_t i = 0; i < opts.max_new_tokens; ++i) {
    const int32_t tok = sampler.sample(logits.data());
    sampler.accept(tok);
    out.push_back(tok);
    if (on_token && !on_token(tok)) break;
    if (std::find(opts.stop_ids.begin(), opts.stop_ids.end(), tok) != opts.stop_ids.end()) break;
    if (i + 1 == opts.max_new_tokens) break;
    model.forward({SeqChunk{0, pos, &tok, 1, false}}, cache, logits.data(), fo);
    ++pos;
  }
  return out;
}

}  // namespace fathom
