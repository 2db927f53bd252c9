// fathom kl: how close a quantized model's next-token distributions are to the model as
// stored: mean KL(P_ref ‖ P_quant) per token and top-1 agreement.
#include <cstdio>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/options.h"
#include "core/error.h"
#include "measure/kl.h"

namespace fathom::cli {

void add_kl(CLI::App& app) {
  struct Args {
    ModelArgs m;
    std::string ids;
    KlOpts k;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("kl", "KL divergence and top-1 agreement of --quant against the stored weights");
  a->m.add(sub);
  sub->get_option("--quant")->required();
  sub->add_option("--ids", a->ids, "one sequence of comma-separated token ids (default: pseudo-random)");
  sub->add_option("--seqs", a->k.n_seqs, "pseudo-random sequences")->check(at_least(1));
  sub->add_option("--len", a->k.len, "tokens per pseudo-random sequence")->check(at_least(1));
  sub->add_option("--seed", a->k.seed, "seed of the pseudo-random ids");
  sub->callback([a] {
    if (!a->ids.empty()) a->k.seqs = {parse_ids(a->ids)};
    a->k.attn = parse_attn(a->m.attn);
    LoadOpts ref_opts = a->m.load_opts();
    ref_opts.quant.clear();
    auto ref = load_model(a->m.model, ref_opts);
    auto quant = load_model(a->m.model, a->m.load_opts());
    const LogitAgreement r = compare_models(*ref, *quant, a->k);
    std::printf("quant %s: %lld tokens, mean KL %.6g nats, max KL %.6g, top-1 agreement %.2f%%\n",
                a->m.quant.c_str(), (long long)r.tokens, r.mean_kl(), r.kl_max, 100.0 * r.top1());
  });
}

}  // namespace fathom::cli
