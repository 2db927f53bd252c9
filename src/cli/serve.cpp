// Placeholder until the subcommand lands.
#include "cli/commands.h"
#include "core/error.h"

namespace fathom::cli {
void add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "(not available yet)");
  sub->allow_extras();
  sub->callback([] { fail("'serve' is not available in this build"); });
}
}  // namespace fathom::cli
