// JSONL writers for the arithmetic task.
#include "tasks/arith_data.h"

#include <nlohmann/json.hpp>
#include <ostream>

#include "core/error.h"

namespace fathom::tasks {
namespace {

using json = nlohmann::ordered_json;

std::string completion(const Problem& p, bool think) { return think ? r1_completion(p) : no_think_completion(p); }

}  // namespace

DataKind parse_data_kind(const std::string& s) {
  if (s == "text") return DataKind::Text;
  if (s == "sft") return DataKind::Sft;
  if (s == "problems") return DataKind::Problems;
  fail("data kind '{}': expected text, sft or problems", s);
}

std::string text_line(const Problem& p, bool think) {
  return json{{"text", p.prompt + "\n" + completion(p, think)}}.dump();
}

// The reasoning stays in "content", tags included: the model's chat template must render it
// for SFT to train on it (see docs/nano-r1-task.md, "Data files").
std::string sft_line(const Problem& p, bool think) {
  json msgs = json::array();
  msgs.push_back({{"role", "user"}, {"content", p.prompt}});
  msgs.push_back({{"role", "assistant"}, {"content", completion(p, think)}});
  return json{{"messages", std::move(msgs)}}.dump();
}

std::string problem_line(const Problem& p, uint64_t seed, int64_t index) {
  return json{{"prompt", p.prompt}, {"answer", p.answer}, {"difficulty", p.difficulty},
              {"seed", seed},       {"index", index}}
      .dump();
}

int64_t write_jsonl(std::ostream& out, const DataOpts& opts) {
  if (opts.n < 0) fail("the number of problems must be non-negative, not {}", opts.n);
  for (int64_t i = 0; i < opts.n; ++i) {
    const Problem p = generate(opts.seed, i, opts.difficulty, opts.style);
    switch (opts.kind) {
      case DataKind::Text: out << text_line(p, opts.think); break;
      case DataKind::Sft: out << sft_line(p, opts.think); break;
      case DataKind::Problems: out << problem_line(p, opts.seed, i); break;
    }
    out << '\n';
  }
  if (!out) fail("writing the data failed");
  return opts.n;
}

}  // namespace fathom::tasks
