#pragma once
// Speed of one model on this machine: prompt processing (prefill) and token-by-token decode,
// set against the memory-bandwidth roofline of decode (every active weight byte is read once
// per token, so tok/s cannot exceed read bandwidth / bytes per token).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/runner.h"

namespace fathom {

struct BenchOpts {
  int64_t prompt_tokens = 512;   // prefill: one forward over this many tokens
  int64_t decode_tokens = 128;   // decode: this many single-token forwards
  bool decode_after_prompt = false;  // decode after the prompt (context p..p+n), not from empty
  // Untimed prefill + decode first (pages weights in, grows the activation buffers, warms
  // caches); -1: the whole prompt, as llama-bench's warm-up run.
  int64_t warmup_tokens = -1;
  int reps = 1;                  // timed repetitions; the median is reported
  bool measure_bandwidth = true;
  size_t bandwidth_bytes = size_t(1) << 30;  // probe buffer, well above the last-level cache
  AttnMode attn = AttnMode::Absorbed;
  uint64_t seed = 0;             // of the pseudo-random prompt ids
  bool breakdown = false;        // time the parts of each decode step (via the layer trace)
  int64_t draft = 0;             // speculative decoding: MTP draft tokens per step (0: off)
  int64_t batch = 1;             // sequences decoding together (one slot each); tok/s sums them
};

// Where a decode step's time goes, from timestamps at the model's trace points: embedding,
// each decoder layer (attention + FFN), and the final norm + lm_head. Mean ms per step.
struct DecodeBreakdown {
  double embed_ms = 0;
  std::vector<double> layer_ms;  // [L]
  double head_ms = 0;            // final norm + lm_head + the rest of forward
};

struct BenchResult {
  int threads = 0;
  int64_t prompt_tokens = 0, decode_tokens = 0;
  double prefill_s = 0, prefill_tok_s = 0;   // median over reps
  double decode_s = 0, decode_tok_s = 0;     // median over reps (whole run / tokens, summed over the batch)
  int64_t batch = 1;
  double decode_ms_p50 = 0;                  // median single-token step, all reps pooled
  size_t weight_bytes = 0;                   // weights held in memory
  size_t bytes_per_token = 0;                // weight bytes one decoded token reads
  double effective_gbs = 0;                  // bytes_per_token × decode tok/s
  double bandwidth_gbs = 0;                  // read bandwidth interleaved with the decodes (0: not measured)
  double bandwidth_best_pass_gbs = 0;        // the probe's fastest single slice (~16 MiB)
  double roofline_tok_s = 0;                 // bandwidth / bytes_per_token
  double roofline_frac = 0;                  // decode tok/s / roofline tok/s
  size_t peak_rss_bytes = 0;                 // VmHWM outside the bandwidth probes
  DecodeBreakdown breakdown;                 // filled when opts.breakdown
  SpecStats spec;                            // the timed decodes' drafts (opts.draft > 0)
};

BenchResult run_bench(Model& model, const BenchOpts& opts);

// The process's peak resident set (VmHWM in /proc/self/status); 0 where unavailable.
size_t peak_rss_bytes();

}  // namespace fathom
