// Placeholder until the subcommand lands.
#include "cli/commands.h"
#include "core/error.h"

namespace fathom::cli {
void add_init_random(CLI::App& app) {
  auto* sub = app.add_subcommand("init-random", "(not available yet)");
  sub->allow_extras();
  sub->callback([] { fail("'init-random' is not available in this build"); });
}
}  // namespace fathom::cli
