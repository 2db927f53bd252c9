// fathom bench: prefill and decode speed of a checkpoint, against the decode roofline
// (read bandwidth / weight bytes per token). Human-readable, or one JSON object with --json.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/options.h"
#include "core/error.h"
#include "measure/bench.h"

namespace fathom::cli {

namespace {
std::string human_bytes(double b) {
  return b >= 1e9 ? fmt::format("{:.2f} GB", b / 1e9) : fmt::format("{:.1f} MB", b / 1e6);
}
}  // namespace

void add_bench(CLI::App& app) {
  struct Args {
    ModelArgs m;
    BenchOpts b;
    bool json = false;
    bool no_bandwidth = false;
    SpeculativeArgs spec;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("bench", "prefill / decode tok/s and the memory-bandwidth roofline");
  a->m.add(sub);
  // -P, not -p: in `fathom run`, -p is the prompt's text.
  sub->add_option("-P,--prompt", a->b.prompt_tokens, "prompt tokens (prefill)")->check(at_least(1));
  sub->add_option("-n,--decode", a->b.decode_tokens, "decoded tokens")->check(at_least(1));
  sub->add_flag("--decode-after-prompt", a->b.decode_after_prompt,
                "decode with the prompt as context (default: from an empty context, like llama-bench)");
  sub->add_option("--warmup", a->b.warmup_tokens, "untimed warm-up prompt tokens (default: the whole prompt, as llama-bench warms up)")->check(at_least(0));
  sub->add_option("-r,--reps", a->b.reps, "timed repetitions (median reported)")->check(at_least(1));
  sub->add_option("-b,--batch", a->b.batch, "sequences decoding together, one slot each (decode tok/s sums them)")
      ->check(at_least(1));
  sub->add_flag("--no-bandwidth", a->no_bandwidth, "skip the read-bandwidth probe");
  sub->add_option("--bandwidth-mb", [a](const std::vector<std::string>& v) {
    const double mb = std::stod(v.at(0));
    a->b.bandwidth_bytes = size_t(mb * 1048576.0);
    return mb >= 1;
  }, "read-bandwidth probe buffer, MiB (default 1024); the probe streams between decode steps, as long as each step");
  sub->add_flag("--json", a->json, "one JSON object on stdout");
  a->spec.add(sub);
  sub->add_flag("--breakdown", a->b.breakdown, "also time each part of a decode step (embed, layers, lm_head)");
  sub->callback([a] {
    LoadOpts lo = a->m.load_opts();
    if (a->json) lo.progress = false;
    const auto t0 = std::chrono::steady_clock::now();
    auto model = load_model(a->m.model, lo);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    a->b.attn = parse_attn(a->m.attn);
    a->b.measure_bandwidth = !a->no_bandwidth;
    a->b.draft = a->spec.draft_tokens();
    const BenchResult r = run_bench(*model, a->b);
    const std::string quant = a->m.quant.empty() ? "as stored" : a->m.quant;
    if (a->json) {
      nlohmann::json j = {
          {"model", a->m.model}, {"quant", a->m.quant.empty() ? "none" : a->m.quant}, {"threads", r.threads},
          {"load_s", load_s}, {"prompt_tokens", r.prompt_tokens}, {"decode_tokens", r.decode_tokens}, {"batch", r.batch},
          {"decode_after_prompt", a->b.decode_after_prompt},
          {"prefill_s", r.prefill_s}, {"prefill_tok_s", r.prefill_tok_s}, {"decode_s", r.decode_s},
          {"decode_tok_s", r.decode_tok_s}, {"decode_ms_p50", r.decode_ms_p50}, {"weight_bytes", r.weight_bytes},
          {"bytes_per_token", r.bytes_per_token}, {"effective_gbs", r.effective_gbs},
          {"bandwidth_gbs", r.bandwidth_gbs}, {"bandwidth_best_pass_gbs", r.bandwidth_best_pass_gbs},
          {"roofline_tok_s", r.roofline_tok_s},
          {"roofline_pct", 100.0 * r.roofline_frac}, {"peak_rss_bytes", r.peak_rss_bytes}};
      if (a->b.draft > 0)
        j["speculative"] = {{"method", "mtp"}, {"draft", a->b.draft}, {"drafted", r.spec.drafted},
                            {"accepted", r.spec.accepted}, {"acceptance", r.spec.acceptance()},
                            {"tokens_per_step", r.spec.tokens_per_step()}};
      if (a->b.breakdown)
        j["decode_breakdown_ms"] = {{"embed", r.breakdown.embed_ms}, {"layers", r.breakdown.layer_ms},
                                    {"head", r.breakdown.head_ms}};
      std::printf("%s\n", j.dump().c_str());
      return;
    }
    std::printf("model      %s (%s), %s of weights, loaded in %.1f s, %d threads\n", a->m.model.c_str(),
                quant.c_str(), human_bytes(double(r.weight_bytes)).c_str(), load_s, r.threads);
    std::printf("prefill    %lld tokens: %8.2f tok/s  (%.2f s)\n", (long long)r.prompt_tokens, r.prefill_tok_s,
                r.prefill_s);
    std::printf("decode     %lld tokens%s: %8.2f tok/s  (median step %.1f ms%s)\n", (long long)r.decode_tokens,
                r.batch > 1 ? fmt::format(" x {} sequences", r.batch).c_str() : "", r.decode_tok_s,
                r.decode_ms_p50, a->b.decode_after_prompt ? ", after the prompt" : "");
    if (a->b.draft > 0)
      std::printf("speculative mtp, %lld drafts per step: %.1f%% accepted, %.2f tokens per step\n",
                  (long long)a->b.draft, 100.0 * r.spec.acceptance(), r.spec.tokens_per_step());
    std::printf("weights    %s read per decoded token -> %.1f GB/s effective\n",
                human_bytes(double(r.bytes_per_token)).c_str(), r.effective_gbs);
    if (r.bandwidth_gbs > 0)
      std::printf("roofline   %.1f GB/s read bandwidth between the steps (fastest slice %.1f) -> %.1f tok/s; decode at %.0f%% of it\n",
                  r.bandwidth_gbs, r.bandwidth_best_pass_gbs, r.roofline_tok_s, 100.0 * r.roofline_frac);
    std::printf("memory     %s peak resident\n", human_bytes(double(r.peak_rss_bytes)).c_str());
    if (a->b.breakdown) {
      const DecodeBreakdown& d = r.breakdown;
      std::printf("decode step, mean ms: embed %.2f | layers", d.embed_ms);
      for (double ms : d.layer_ms) std::printf(" %.1f", ms);
      std::printf(" | final norm + lm_head %.1f\n", d.head_ms);
    }
  });
}

}  // namespace fathom::cli
