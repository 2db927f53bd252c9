// fathom task: data for nano-R1's arithmetic task (docs/nano-r1-task.md) as JSONL.
#include <cstdio>
#include <fstream>
#include <iostream>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "tasks/arith_data.h"

namespace fathom::cli {

namespace {
struct TaskArgs {
  std::string kind = "text";
  int64_t n = 1000;
  uint64_t seed = 0;
  std::string difficulty = "mix";
  std::string out;
  bool no_think = false;
  double merge = 0;
};
}  // namespace

void add_task(CLI::App& app) {
  auto a = std::make_shared<TaskArgs>();
  auto* sub = app.add_subcommand("task", "write arithmetic reasoning problems (nano-R1's task) as JSONL");
  sub->add_option("--kind", a->kind,
                  "text = documents for pretraining, sft = R1-format chat examples, problems = prompts and "
                  "answers for GRPO and evaluation")
      ->check(CLI::IsMember({"text", "sft", "problems"}).description(""))  // choices are in the text
      ->type_name("KIND");
  sub->add_option("--n", a->n, "number of problems (problems 0..n-1 of the seed)")->check(at_least(0));
  sub->add_option("--seed", a->seed, "seed; the same seed gives the same problems");
  sub->add_option("--difficulty", a->difficulty, "a level D (1-6), a range A-B, or mix (every level)")
      ->type_name("D|A-B|mix");
  sub->add_option("--out", a->out, "JSONL file to write (default: standard output)")->type_name("FILE");
  sub->add_flag("--no-think", a->no_think, "text and sft: answer after an empty think block (the ablation)");
  sub->add_option("--merge", a->merge,
                  "text and sft: probability that a trace line takes two operations, where the one just "
                  "reduced feeds the next (0: the canonical one-per-line trace)")
      ->check(CLI::Range(0.0, 1.0))
      ->type_name("P");
  sub->callback([a] {
    tasks::DataOpts o;
    o.kind = tasks::parse_data_kind(a->kind);
    o.n = a->n;
    o.seed = a->seed;
    o.difficulty = tasks::parse_difficulty(a->difficulty);
    o.think = !a->no_think;
    o.style.merge = a->merge;
    if (a->out.empty()) {
      tasks::write_jsonl(std::cout, o);
      std::cout.flush();
      return;
    }
    std::ofstream f(a->out);
    if (!f) fail("cannot write {}", a->out);
    tasks::write_jsonl(f, o);
    f.close();
    if (!f) fail("writing {} failed", a->out);
    std::fprintf(stderr, "wrote %lld lines to %s\n", static_cast<long long>(o.n), a->out.c_str());
  });
}

}  // namespace fathom::cli
