// fathom eval: accuracy on fresh problems of nano-R1's arithmetic task, greedy and batched.
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/options.h"
#include "core/error.h"
#include "train/evaluate.h"

namespace fathom::cli {

namespace {
struct Args {
  ModelArgs m;
  std::string tokenizer, difficulty = "mix", completions;
  int64_t n = 500, max_tokens = 256, batch = 64;
  uint64_t seed = 0;
  bool json = false, no_think = false;
};
void write_completions(const std::string& path, const train::EvalResult& r) {
  std::ofstream f(path);
  if (!f) fail("cannot write {}", path);
  for (const train::EvalItem& it : r.items) {
    const nlohmann::ordered_json j = {{"prompt", it.problem.prompt},         {"answer", it.problem.answer},
                                      {"difficulty", it.problem.difficulty}, {"completion", it.completion},
                                      {"correct", it.graded.correct},        {"formatted", it.graded.formatted}};
    // Replacement characters for any invalid UTF-8 a model may write: the file stays valid JSONL.
    f << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << '\n';
  }
  f.close();
  if (!f) fail("writing {} failed", path);
}
}  // namespace

void add_eval(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("eval", "accuracy on N fresh arithmetic problems (nano-R1's task), greedy and batched");
  a->m.add(sub);
  add_tokenizer_option(sub, a->tokenizer);
  sub->add_option("--n", a->n, "problems")->check(at_least(1));
  sub->add_option("--seed", a->seed, "seed of the problems (use one not used in training)");
  sub->add_option("--difficulty", a->difficulty, "a level D (1-6), a range A-B, or mix");
  sub->add_option("--max-tokens", a->max_tokens, "longest completion, tokens")->check(at_least(1));
  sub->add_option("--batch", a->batch, "sequences decoded together")->check(at_least(1));
  sub->add_flag("--no-think", a->no_think, "force an empty think block: the answer must come at once (the ablation)");
  sub->add_flag("--json", a->json, "print one JSON object with accuracy, n and the counts by difficulty");
  sub->add_option("--completions", a->completions,
                  "write every problem's completion as JSONL: prompt, answer, difficulty, completion, correct, "
                  "formatted")
      ->type_name("FILE");
  sub->callback([a] {
    const std::string& dir = a->m.model;
    std::unique_ptr<Model> model = load_model(dir, a->m.load_opts());
    const std::string tok_dir = a->tokenizer.empty() ? dir : a->tokenizer;
    const Tokenizer tok = Tokenizer::load(tok_dir);
    const ChatTemplate tmpl = ChatTemplate::load(tok_dir);
    train::EvalOpts eo;
    eo.n = a->n;
    eo.seed = a->seed;
    eo.difficulty = tasks::parse_difficulty(a->difficulty);
    eo.think = !a->no_think;
    eo.max_new_tokens = a->max_tokens;
    eo.max_slots = a->batch;
    eo.attn = parse_attn(a->m.attn);
    const train::EvalResult r = train::evaluate_arith(*model, tok, tmpl, eo);
    if (!a->completions.empty()) write_completions(a->completions, r);
    if (a->json) {
      nlohmann::json by = nlohmann::json::object();
      for (int d = tasks::kMinDifficulty; d <= tasks::kMaxDifficulty; ++d)
        if (r.n_by_level[size_t(d)])
          by[std::to_string(d)] = {{"n", r.n_by_level[size_t(d)]},
                                   {"accuracy", double(r.correct_by_level[size_t(d)]) / double(r.n_by_level[size_t(d)])}};
      const nlohmann::json j = {{"accuracy", r.accuracy()},
                                {"n", r.n},
                                {"correct", r.correct},
                                {"formatted", r.formatted},
                                {"think", eo.think},
                                {"seed", a->seed},
                                {"by_difficulty", by},
                                {"completion_tokens", r.generated},
                                {"seconds", r.seconds}};
      fmt::print("{}\n", j.dump());
      return;
    }
    fmt::print("accuracy {:.1f}% ({}/{}){}, formatted {:.1f}%\n", 100.0 * r.accuracy(), r.correct, r.n,
               eo.think ? "" : " without thinking", 100.0 * double(r.formatted) / double(r.n));
    for (int d = tasks::kMinDifficulty; d <= tasks::kMaxDifficulty; ++d)
      if (r.n_by_level[size_t(d)])
        fmt::print("  difficulty {}: {:.1f}% ({}/{})\n", d,
                   100.0 * double(r.correct_by_level[size_t(d)]) / double(r.n_by_level[size_t(d)]),
                   r.correct_by_level[size_t(d)], r.n_by_level[size_t(d)]);
    fmt::print("{} completion tokens in {:.1f} s: {:.0f} tok/s\n", r.generated, r.seconds,
               double(r.generated) / std::max(r.seconds, 1e-9));
  });
}

}  // namespace fathom::cli
