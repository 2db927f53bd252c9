// fathom: one binary, one subcommand per job.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"fathom: DeepSeek-V3/R1 in C++"};
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("fathom: error: ") + e.what() + "\n";
  });
  using namespace fathom::cli;
  add_logits(app);
  add_generate(app);
  add_tokenize(app);
  add_template(app);
  add_run(app);
  add_serve(app);
  add_bench(app);
  add_init_random(app);
  add_quantize(app);
  add_kl(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fathom: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
