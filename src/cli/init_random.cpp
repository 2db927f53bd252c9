// fathom init-random: a random-weight checkpoint of any size in the exact HF layout.
#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "checkpoint/random_checkpoint.h"

namespace fathom::cli {

void add_init_random(CLI::App& app) {
  auto o = std::make_shared<RandomCheckpointOpts>();
  auto* sub = app.add_subcommand("init-random", "write a random-weight checkpoint for a config.json");
  sub->add_option("--config", o->config_path, "the model's config.json (e.g. tests/server/tiny-v3-full.config.json)")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--out", o->out_dir, "output directory")->required();
  sub->add_option("--dtype", o->dtype, "weight dtype: bf16 or fp8 (128x128 block scales)")
      ->check(CLI::IsMember({"bf16", "fp8"}));
  sub->add_option("--seed", o->seed, "random seed");
  sub->add_option("--threads", o->threads, "threads (default: all cores)")->check(at_least(0));
  sub->add_option("--shard-gb", [o](const std::vector<std::string>& v) {
    o->shard_bytes = uint64_t(std::stod(v.at(0)) * 1e9);
    return o->shard_bytes > 0;
  }, "largest shard, GB (default 4.3)");
  sub->callback([o] {
    o->progress = true;
    const uint64_t n = write_random_checkpoint(*o);
    std::fprintf(stderr, "wrote %.3f GB to %s\n", double(n) / 1e9, o->out_dir.c_str());
  });
}

}  // namespace fathom::cli
