#pragma once
// Single-sequence generation with the KV cache: prefill the prompt, then decode token by token.
#include <cstdint>
#include <functional>
#include <vector>

#include "model/model.h"
#include "runtime/sampler.h"

namespace fathom {

struct GenerateOpts {
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  AttnMode attn = AttnMode::Absorbed;
  std::vector<int32_t> stop_ids;  // generation ends after emitting one of these
  int64_t prefill_chunk = 512;    // prompt tokens per forward
};

// Calls on_token for each generated id; returning false stops early. Returns the ids.
std::vector<int32_t> generate(Model& model, const std::vector<int32_t>& prompt, const GenerateOpts& opts,
                              const std::function<bool(int32_t)>& on_token = {});

}  // namespace fathom
