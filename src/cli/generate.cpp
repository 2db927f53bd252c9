// fathom generate: prints only the generated ids, space-separated, on one line.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/options.h"
#include "core/error.h"
#include "runtime/generate.h"

namespace fathom::cli {

void add_generate(CLI::App& app) {
  struct Args {
    ModelArgs m;
    std::string ids;
    int64_t n = 16;
    float temperature = 0.0f, top_p = 1.0f;
    int32_t top_k = 0;
    uint64_t seed = 0;
    SpeculativeArgs spec;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("generate", "generate token ids after a prompt of ids");
  a->m.add(sub);
  sub->add_option("--ids", a->ids, "comma-separated prompt token ids")->required();
  sub->add_option("-n,--max-tokens", a->n, "tokens to generate")->check(at_least(1));
  sub->add_option("--temperature", a->temperature, "sampling temperature; 0 = greedy")->check(at_least(0));
  sub->add_option("--top-p", a->top_p, "nucleus sampling: keep the likeliest tokens up to this probability mass")
      ->check(in_range(0, 1));
  sub->add_option("--top-k", a->top_k, "keep only the k likeliest tokens; 0 = all")->check(at_least(0));
  sub->add_option("--seed", a->seed, "sampling seed");
  a->spec.add(sub);
  sub->callback([a] {
    const std::vector<int32_t> ids = parse_ids(a->ids);
    auto model = load_model(a->m.model, a->m.load_opts());
    GenerateOpts g;
    g.max_new_tokens = a->n;
    g.sampling.temperature = a->temperature;
    g.sampling.top_p = a->top_p;
    g.sampling.top_k = a->top_k;
    g.sampling.seed = a->seed;
    g.attn = parse_attn(a->m.attn);
    g.draft = a->spec.draft_tokens();
    std::vector<int32_t> out = generate(*model, ids, g);
    std::string line;
    for (size_t i = 0; i < out.size(); ++i) line += (i ? " " : "") + std::to_string(out[i]);
    std::printf("%s\n", line.c_str());
  });
}

}  // namespace fathom::cli
