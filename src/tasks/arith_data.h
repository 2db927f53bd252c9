#pragma once
// JSONL data for nano-R1's arithmetic task (docs/nano-r1-task.md, "Data files"): documents for
// pretraining, chat examples for SFT, and bare problems for GRPO and evaluation.
#include <cstdint>
#include <iosfwd>
#include <string>

#include "tasks/arith.h"

namespace fathom::tasks {

enum class DataKind { Text, Sft, Problems };
DataKind parse_data_kind(const std::string& s);  // "text", "sft" or "problems"

struct DataOpts {
  DataKind kind = DataKind::Text;
  int64_t n = 0;  // problems 0..n-1 of the seed
  uint64_t seed = 0;
  DifficultyRange difficulty;
  bool think = true;  // false: the answer follows an empty think block (the no-thinking ablation)
  TraceStyle style;   // how the traces are written (text and sft)
};

// One JSON object, no newline.
std::string text_line(const Problem& p, bool think = true);     // {"text": prompt "\n" completion}
std::string sft_line(const Problem& p, bool think = true);      // {"messages": [user, assistant]}
std::string problem_line(const Problem& p, uint64_t seed, int64_t index);  // {"prompt", "answer", ...}

// Writes opts.n lines; returns the number written.
int64_t write_jsonl(std::ostream& out, const DataOpts& opts);

}  // namespace fathom::tasks
