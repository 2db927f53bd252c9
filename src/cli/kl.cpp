// Placeholder until the subcommand lands.
#include "cli/commands.h"
#include "core/error.h"

namespace fathom::cli {
void add_kl(CLI::App& app) {
  auto* sub = app.add_subcommand("kl", "(not available yet)");
  sub->allow_extras();
  sub->callback([] { fail("'kl' is not available in this build"); });
}
}  // namespace fathom::cli
