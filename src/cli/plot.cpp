// fathom plot: line charts (SVG) of a training run's metrics log.
#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "train/metrics.h"

namespace fathom::cli {

void add_plot(CLI::App& app) {
  auto o = std::make_shared<train::PlotMetricsOpts>();
  auto* sub = app.add_subcommand("plot", "draw a training metrics log (JSONL) as SVG line charts");
  sub->add_option("--log", o->log, "metrics log written by training, one JSON object per step")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--out", o->out, "SVG file to write")->required();
  sub->add_option("--keys", o->keys,
                  "comma-separated keys to plot against step; keys naming a loss share one chart, "
                  "others (lr, grad_norm) get one each")
      ->delimiter(',');
  sub->add_option("--title", o->title, "chart title (default: the log's file name)");
  sub->callback([o] {
    for (const std::string& k : train::plot_metrics(*o))
      std::fprintf(stderr, "plot: %s has no '%s' values; left out\n", o->log.c_str(), k.c_str());
    std::fprintf(stderr, "wrote %s\n", o->out.c_str());
  });
}

}  // namespace fathom::cli
