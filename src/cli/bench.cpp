// Placeholder until the subcommand lands.
#include "cli/commands.h"
#include "core/error.h"

namespace fathom::cli {
void add_bench(CLI::App& app) {
  auto* sub = app.add_subcommand("bench", "(not available yet)");
  sub->allow_extras();
  sub->callback([] { fail("'bench' is not available in this build"); });
}
}  // namespace fathom::cli
