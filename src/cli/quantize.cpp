// fathom quantize: writes a checkpoint with Q8_0/Q4_0 linear weights that loads without
// requantizing (same logits, bit for bit, as loading the source with --quant).
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "cli/options.h"
#include "checkpoint/quantize_checkpoint.h"

namespace fathom::cli {

void add_quantize(CLI::App& app) {
  auto o = std::make_shared<QuantizeCheckpointOpts>();
  auto* sub = app.add_subcommand("quantize", "write a checkpoint with q8_0 / q4_0 linear weights");
  sub->add_option("--model", o->model_dir, "source checkpoint directory")->required();
  sub->add_option("--quant", o->quant, "q8_0 | q4_0")->required()->check(CLI::IsMember({"q8_0", "q4_0"}));
  sub->add_option("--out", o->out_dir, "output directory (new or empty)")->required();
  sub->add_option("--threads", o->threads, "threads (default: all cores)")->check(at_least(0));
  sub->add_option("--shard-gb", [o](const std::vector<std::string>& v) {
    const double gb = std::stod(v.at(0));
    o->shard_bytes = uint64_t(gb * 1e9);
    return gb > 0;
  }, "largest shard, GB (default 4.3)");
  sub->callback([o] {
    o->progress = true;
    const QuantizeCheckpointResult r = quantize_checkpoint(*o);
    std::fprintf(stderr, "%s: %lld tensors (%lld requantized to %s), %.3f GB -> %.3f GB in %lld file(s)\n",
                 o->out_dir.c_str(), (long long)r.tensors, (long long)r.quantized, o->quant.c_str(),
                 double(r.bytes_in) / 1e9, double(r.bytes_out) / 1e9, (long long)r.shards);
  });
}

}  // namespace fathom::cli
