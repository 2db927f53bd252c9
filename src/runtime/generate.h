#pragma once
// Single-sequence generation: the Runner (runner.h) with one slot, stepped synchronously.
// A Session keeps its cache between calls, so a multi-turn chat only prefills what is new.
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"
#include "runtime/runner.h"

namespace fathom {

struct GenerateOpts {
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  AttnMode attn = AttnMode::Absorbed;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these
  int64_t prefill_chunk = 512;    // prompt tokens per forward
  // Speculative decoding: tokens the model's MTP module drafts per step (0: off). The same
  // ids when greedy, the same distribution when sampling; fails on a model without MTP.
  int64_t draft = 0;
};

class Session {
 public:
  Session(Model& model, int64_t max_ctx);
  // Generates after `prompt` (the whole conversation so far); the longest prefix shared
  // with the previous call's tokens is reused from the cache. Calls on_token for each id;
  // returning false stops early. Returns the generated ids.
  std::vector<int32_t> generate(const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                                const std::function<bool(int32_t)>& on_token = {});
  int64_t max_ctx() const { return runner_.max_ctx(); }
  // Prompt tokens the last call found already in the cache.
  int64_t reused_tokens() const { return reused_; }
  // The last call's speculative decoding counts.
  const SpecStats& spec_stats() const { return spec_; }

 private:
  Runner runner_;  // one slot; its prefix cache holds the previous call's tokens
  int64_t reused_ = 0;
  SpecStats spec_;
};

// One-shot generation in a fresh cache.
std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                              const std::function<bool(int32_t)>& on_token = {});

}  // namespace fathom
