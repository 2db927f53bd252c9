// fathom: one binary, one subcommand per job.
#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"fathom: DeepSeek-V3/R1 inference, training and an OpenAI-compatible server"};
  app.require_subcommand(0, 1);
  // Set before the subcommands are added, which inherit them: help shows every default.
  app.option_defaults()->always_capture_default();
  app.formatter(std::make_shared<fathom::cli::HelpFormatter>());
  app.footer("`fathom COMMAND --help` describes a command's options.");
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("fathom: error: ") + e.what() + "\n";
  });
  using namespace fathom::cli;
  add_logits(app);
  add_generate(app);
  add_tokenize(app);
  add_tokenizer_train(app);
  add_template(app);
  add_run(app);
  add_serve(app);
  add_bench(app);
  add_init_random(app);
  add_quantize(app);
  add_dequantize(app);
  add_kl(app);
  add_grad(app);
  add_train(app);
  add_plot(app);
  add_task(app);
  add_grpo(app);
  add_eval(app);
  try {
    app.parse(argc, argv);
    if (app.get_subcommands().empty()) {  // plain `fathom`: the usage, not an error
      std::fputs(app.help().c_str(), stdout);
      return 0;
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fathom: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
