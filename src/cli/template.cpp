// Placeholder until the subcommand lands.
#include "cli/commands.h"
#include "core/error.h"

namespace fathom::cli {
void add_template(CLI::App& app) {
  auto* sub = app.add_subcommand("template", "(not available yet)");
  sub->allow_extras();
  sub->callback([] { fail("'template' is not available in this build"); });
}
}  // namespace fathom::cli
