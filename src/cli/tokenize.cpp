// Placeholder until the subcommand lands.
#include "cli/commands.h"
#include "core/error.h"

namespace fathom::cli {
void add_tokenize(CLI::App& app) {
  auto* sub = app.add_subcommand("tokenize", "(not available yet)");
  sub->allow_extras();
  sub->callback([] { fail("'tokenize' is not available in this build"); });
}
}  // namespace fathom::cli
