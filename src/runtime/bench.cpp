#include "runtime/bench.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <optional>
#include <string>

#include "core/error.h"
#include "runtime/kl.h"
#include "runtime/sampler.h"

namespace fathom {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Greedy decode of n tokens at positions pos0.. of slot 0 (what is cached below pos0 is the
// context). Each step is timed alone; after it, `between` (if any) runs untimed with the
// step's seconds. Per-step seconds are appended to steps. Returns the steps' total seconds.
double decode_run(Model& model, KvCache& cache, int32_t first, int64_t pos0, int64_t n, const ForwardOpts& fo,
                  std::vector<float>& logits, std::vector<double>* steps,
                  const std::function<void(double)>& between = {}) {
  const int64_t V = model.config().vocab_size;
  int32_t tok = first;
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    const auto ts = Clock::now();
    model.forward({SeqChunk{0, pos0 + i, &tok, 1, false}}, cache, logits.data(), fo);
    tok = argmax(logits.data(), V);
    const double s = seconds_since(ts);
    total += s;
    if (steps) steps->push_back(s);
    if (between) between(s);
  }
  return total;
}

// A separate untimed-overall pass with the trace on: the trace copies nothing, only stamps
// the clock, so the parts add up to about one plain step.
DecodeBreakdown decode_breakdown(Model& model, KvCache& cache, int32_t first, int64_t pos0, int64_t n,
                                 AttnMode attn, std::vector<float>& logits) {
  const int64_t V = model.config().vocab_size, L = model.config().num_hidden_layers;
  DecodeBreakdown b;
  b.layer_ms.assign(size_t(L), 0.0);
  Clock::time_point last;
  TraceFn trace = [&](const std::string& name, const float*, int64_t, int64_t) {
    const auto now = Clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - last).count();
    if (name == "embed") b.embed_ms += ms;
    else if (name.rfind("layer.", 0) == 0) b.layer_ms[size_t(std::stoll(name.substr(6)))] += ms;
    else if (name == "final_norm") b.head_ms += ms;
    last = now;
  };
  ForwardOpts fo;
  fo.attn = attn;
  fo.trace = &trace;
  int32_t tok = first;
  for (int64_t i = 0; i < n; ++i) {
    last = Clock::now();
    model.forward({SeqChunk{0, pos0 + i, &tok, 1, false}}, cache, logits.data(), fo);
    b.head_ms += std::chrono::duration<double, std::milli>(Clock::now() - last).count();
    tok = argmax(logits.data(), V);
  }
  b.embed_ms /= double(n);
  b.head_ms /= double(n);
  for (double& x : b.layer_ms) x /= double(n);
  return b;
}

}  // namespace

size_t peak_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return size_t(std::stoull(line.substr(6))) * 1024;  // "VmHWM:  123 kB"
  return 0;
}

BenchResult run_bench(Model& model, const BenchOpts& o) {
  if (o.prompt_tokens < 1 || o.decode_tokens < 1) fail("bench: need at least one prompt and one decode token");
  if (o.reps < 1) fail("bench: reps must be at least 1");
  const int64_t V = model.config().vocab_size;
  const std::vector<int32_t> prompt = pseudo_random_ids(o.prompt_tokens, V, o.seed);
  ForwardOpts fo;
  fo.attn = o.attn;
  std::vector<float> logits(static_cast<size_t>(V));  // [1, V]: only the last token's logits
  const int64_t pos0 = o.decode_after_prompt ? o.prompt_tokens : 0;
  KvCache cache = model.make_cache(1, std::max(o.prompt_tokens + 4, pos0 + o.decode_tokens));  // +4: warm-up steps

  if (o.warmup_tokens > 0) {
    const int64_t w = std::min(o.warmup_tokens, o.prompt_tokens);
    model.forward({SeqChunk{0, 0, prompt.data(), w, false}}, cache, logits.data(), fo);
    decode_run(model, cache, prompt[0], w, std::min<int64_t>(4, o.decode_tokens), fo, logits, nullptr);
  }

  // The roofline is the read bandwidth in the same moments as the decode: after every timed
  // step the probe streams for as long as that step took, so decode and probe sample the
  // machine's states alike (a shared machine's bandwidth changes from one second to the
  // next, and probes before and after a decode can each catch another state). Each run's
  // roofline is its probes' bytes over their time; the figure is the median over the runs.
  // The probe's buffer is not the model's: its resident bytes are taken off the high-water
  // mark, which is read last while the probe still lives.
  size_t peak_rss = peak_rss_bytes();
  std::unique_ptr<BandwidthProbe> probe;
  if (o.measure_bandwidth) probe = model.backend().bandwidth_probe(o.bandwidth_bytes);
  BenchResult r;
  r.threads = model.backend().threads();
  r.prompt_tokens = o.prompt_tokens;
  r.decode_tokens = o.decode_tokens;
  std::vector<double> prefill, decode, steps, roofline_gbs;
  double probe_bytes = 0, probe_sec = 0;
  std::function<void(double)> between;
  if (probe)
    between = [&](double s) {
      const BandwidthProbe::Sample p = probe->read_for(s);
      probe_bytes += p.bytes;
      probe_sec += p.seconds;
      r.bandwidth_best_pass_gbs = std::max(r.bandwidth_best_pass_gbs, p.best_gbs);
    };
  for (int rep = 0; rep < o.reps; ++rep) {
    const auto t0 = Clock::now();
    model.forward({SeqChunk{0, 0, prompt.data(), o.prompt_tokens, false}}, cache, logits.data(), fo);
    prefill.push_back(seconds_since(t0));
    probe_bytes = probe_sec = 0;
    decode.push_back(decode_run(model, cache, prompt[0], pos0, o.decode_tokens, fo, logits, &steps, between));
    if (probe) roofline_gbs.push_back(probe_bytes / probe_sec / 1e9);
  }
  if (o.breakdown) r.breakdown = decode_breakdown(model, cache, prompt[0], pos0, o.decode_tokens, o.attn, logits);
  const size_t hwm = peak_rss_bytes(), probe_rss = probe ? probe->resident_bytes() : 0;
  peak_rss = std::max(peak_rss, hwm > probe_rss ? hwm - probe_rss : 0);
  r.prefill_s = median(prefill);
  r.decode_s = median(decode);
  r.prefill_tok_s = double(o.prompt_tokens) / r.prefill_s;
  r.decode_tok_s = double(o.decode_tokens) / r.decode_s;
  r.decode_ms_p50 = median(steps) * 1e3;
  r.weight_bytes = model.weight_bytes();
  r.bytes_per_token = model.active_bytes_per_token();
  r.effective_gbs = double(r.bytes_per_token) * r.decode_tok_s / 1e9;
  r.peak_rss_bytes = peak_rss;
  if (o.measure_bandwidth) {
    r.bandwidth_gbs = median(roofline_gbs);
    r.roofline_tok_s = r.bandwidth_gbs * 1e9 / double(r.bytes_per_token);
    r.roofline_frac = r.decode_tok_s / r.roofline_tok_s;
  }
  return r;
}

}  // namespace fathom
