#pragma once
// Each subcommand lives in its own file and registers itself on the root app.
#include <CLI/CLI.hpp>

namespace fathom::cli {

void add_logits(CLI::App& app);       // logits.cpp
void add_generate(CLI::App& app);     // generate.cpp
void add_tokenize(CLI::App& app);     // tokenize.cpp
void add_tokenizer_train(CLI::App& app);  // tokenizer_train.cpp
void add_template(CLI::App& app);     // template.cpp
void add_run(CLI::App& app);          // run.cpp  (also `chat`)
void add_serve(CLI::App& app);        // serve.cpp
void add_bench(CLI::App& app);        // bench.cpp
void add_init_random(CLI::App& app);  // init_random.cpp
void add_quantize(CLI::App& app);     // quantize.cpp
void add_dequantize(CLI::App& app);   // dequantize.cpp
void add_kl(CLI::App& app);           // kl.cpp
void add_grad(CLI::App& app);         // grad.cpp
void add_train(CLI::App& app);        // train.cpp
void add_plot(CLI::App& app);         // plot.cpp
void add_task(CLI::App& app);         // task.cpp
void add_grpo(CLI::App& app);         // grpo.cpp
void add_eval(CLI::App& app);         // eval.cpp

}  // namespace fathom::cli
