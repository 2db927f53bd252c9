#include "measure/bench.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "core/error.h"
#include "measure/kl.h"
#include "runtime/runner.h"

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

// What runs around each timed step, untimed.
struct StepHooks {
  std::vector<double>* steps = nullptr;       // each step's seconds are appended
  std::function<void()> before;               // before each step
  std::function<void(double)> between;        // after each step, with its seconds
};

// Bench drives the Runner like any generation, through one slot: a prefill is a sequence
// that only reads its prompt (one forward when the step's chunk covers it: logits of the
// last token only, nothing sampled), a decode run a greedy sequence whose KV below pos0 is
// the context.
struct BenchRunner {
  Runner runner;
  StepOpts so;
  int64_t draft = 0;

  // Reads tokens[0..n) into slot 0 from position 0, in one step when n <= so.prefill_chunk.
  // Returns the step's seconds.
  double prefill(const std::vector<int32_t>& tokens, int64_t n) {
    GenRequest req;
    req.prompt.assign(tokens.begin(), tokens.begin() + n);
    req.max_tokens = 0;
    Sequence seq(std::move(req), runner.vocab(), runner.max_ctx());
    runner.scheduler().clear_prefix_cache();  // a full prefill, never a reused prefix
    return run(seq, {});
  }

  // Greedy decode of n tokens at positions pos0.. of slot 0, feeding `first` at pos0 over
  // the context that slot 0 holds below pos0 (its prefix cache after prefill(ctx, pos0)).
  // Each step is timed alone. Returns the steps' total seconds.
  double decode(const std::vector<int32_t>& ctx, int32_t first, int64_t pos0, int64_t n, const StepHooks& h) {
    return decode_batch(ctx, {first}, pos0, n, h);
  }

  // The same with one sequence per first token, decoding together in their own slots (the
  // context below pos0 is shared through the prefix cache).
  double decode_batch(const std::vector<int32_t>& ctx, const std::vector<int32_t>& firsts, int64_t pos0, int64_t n,
                      const StepHooks& h) {
    std::vector<std::unique_ptr<Sequence>> seqs;
    for (int32_t first : firsts) {
      GenRequest req;
      req.prompt.assign(ctx.begin(), ctx.begin() + pos0);
      req.prompt.push_back(first);
      req.sampling.temperature = 0;
      req.max_tokens = n;
      req.draft = draft;
      seqs.push_back(std::make_unique<Sequence>(std::move(req), runner.vocab(), runner.max_ctx()));
    }
    std::vector<Sequence*> all;
    for (auto& s : seqs) all.push_back(s.get());
    return run(all, h);
  }

  double run(Sequence& seq, const StepHooks& h) { return run(std::vector<Sequence*>{&seq}, h); }

  double run(const std::vector<Sequence*>& seqs, const StepHooks& h) {
    for (Sequence* s : seqs) runner.scheduler().admit(*s);
    auto running = [&] {
      for (const Sequence* s : seqs)
        if (s->running()) return true;
      return false;
    };
    double total = 0;
    while (running()) {
      if (h.before) h.before();
      const auto ts = Clock::now();
      runner.step(so);
      const double s = seconds_since(ts);
      total += s;
      if (h.steps) h.steps->push_back(s);
      if (h.between) h.between(s);
    }
    return total;
  }
};

// A separate untimed-overall pass with the trace on: the trace copies nothing, only stamps
// the clock, so the parts add up to about one plain step (head_ms also holds the sampling).
DecodeBreakdown decode_breakdown(BenchRunner& br, const std::vector<int32_t>& ctx, int32_t first, int64_t pos0,
                                 int64_t n, int64_t layers) {
  DecodeBreakdown b;
  b.layer_ms.assign(size_t(layers), 0.0);
  Clock::time_point last;
  TraceFn trace = [&](const std::string& name, const float*, int64_t, int64_t) {
    const auto now = Clock::now();
    const double ms = std::chrono::duration<double, std::milli>(now - last).count();
    if (name == "embed") b.embed_ms += ms;
    else if (name.rfind("layer.", 0) == 0) b.layer_ms[size_t(std::stoll(name.substr(6)))] += ms;
    else if (name == "final_norm") b.head_ms += ms;
    last = now;
  };
  StepHooks h;
  h.before = [&] { last = Clock::now(); };
  // What follows the step's last trace point is the head's.
  h.between = [&](double) { b.head_ms += std::chrono::duration<double, std::milli>(Clock::now() - last).count(); };
  br.so.trace = &trace;
  br.decode(ctx, first, pos0, n, h);
  br.so.trace = nullptr;
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
  const int64_t pos0 = o.decode_after_prompt ? o.prompt_tokens : 0;
  // A drafting decode reuses no context the MTP cache lacks, and a prefill leaves it empty.
  if (o.draft > 0 && o.decode_after_prompt) fail("bench: speculative decoding is measured from an empty context");
  // +4: warm-up steps; +1: the place of a decode's last sampled token (never computed).
  if (o.batch < 1) fail("bench: the batch must be at least 1");
  if (o.batch > 1 && o.decode_after_prompt) fail("bench: a batch decodes from an empty context");
  BenchRunner br{Runner(model, o.batch, std::max(o.prompt_tokens + 4, pos0 + o.decode_tokens) + 1), {}};
  // Each sequence of a batch starts from its own token.
  std::vector<int32_t> firsts;
  for (int64_t b = 0; b < o.batch; ++b) firsts.push_back(prompt[size_t(b % o.prompt_tokens)]);
  br.so.prefill_chunk = br.so.prefill_budget = o.prompt_tokens;  // a prefill is one forward
  br.so.attn = o.attn;
  br.draft = o.draft;
  if (o.draft > 0 && !br.runner.enable_speculation(o.draft))
    fail("speculative decoding needs a model with a multi-token prediction (MTP) module");

  if (o.warmup_tokens != 0) {
    const int64_t w = o.warmup_tokens < 0 ? o.prompt_tokens : std::min(o.warmup_tokens, o.prompt_tokens);
    br.prefill(prompt, w);
    br.decode(prompt, prompt[0], w, std::min<int64_t>(4, o.decode_tokens), {});
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
  StepHooks timed;
  timed.steps = &steps;
  if (probe)
    timed.between = [&](double s) {
      const BandwidthProbe::Sample p = probe->read_for(s);
      probe_bytes += p.bytes;
      probe_sec += p.seconds;
      r.bandwidth_best_pass_gbs = std::max(r.bandwidth_best_pass_gbs, p.best_gbs);
    };
  const SpecStats spec0 = br.runner.spec_stats();
  for (int rep = 0; rep < o.reps; ++rep) {
    prefill.push_back(br.prefill(prompt, o.prompt_tokens));
    probe_bytes = probe_sec = 0;
    decode.push_back(br.decode_batch(prompt, firsts, pos0, o.decode_tokens, timed));
    if (probe) roofline_gbs.push_back(probe_bytes / probe_sec / 1e9);
  }
  const SpecStats& spec1 = br.runner.spec_stats();
  r.spec = SpecStats{spec1.drafted - spec0.drafted, spec1.accepted - spec0.accepted, spec1.steps - spec0.steps};
  if (o.breakdown)
    r.breakdown = decode_breakdown(br, prompt, prompt[0], pos0, o.decode_tokens, model.config().num_hidden_layers);
  const size_t hwm = peak_rss_bytes(), probe_rss = probe ? probe->resident_bytes() : 0;
  peak_rss = std::max(peak_rss, hwm > probe_rss ? hwm - probe_rss : 0);
  r.prefill_s = median(prefill);
  r.decode_s = median(decode);
  r.prefill_tok_s = double(o.prompt_tokens) / r.prefill_s;
  r.decode_tok_s = double(o.decode_tokens * o.batch) / r.decode_s;
  r.batch = o.batch;
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
