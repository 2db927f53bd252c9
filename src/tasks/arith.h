#pragma once
// nano-R1's verifiable reasoning task: multi-step integer arithmetic over + - * and
// parentheses, with a canonical step-by-step trace and a strict answer line. The grammar,
// trace and answer format are specified in docs/nano-r1-task.md; this header is its code.
//
// Problems are counter-based: problem `index` of a seed is a pure function of (seed, index,
// difficulty), so any subset can be generated in any order and reproduced.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fathom::tasks {

constexpr int kMinDifficulty = 1;
constexpr int kMaxDifficulty = 6;

// What a difficulty level draws: `ops` binary operations (the number of trace steps), operands
// in [0, max_operand], and every intermediate value and the result in [0, max_value].
struct Level {
  int ops = 0;
  int64_t max_operand = 0;
  int64_t max_value = 0;
};
Level level(int difficulty);  // throws for a difficulty outside [kMinDifficulty, kMaxDifficulty]

struct Problem {
  int difficulty = 0;
  std::string prompt;  // what the user says: "Compute: 3+4*(5-2)"
  std::string trace;   // inside <think>, one line per reduction (TraceStyle), no trailing newline
  std::string answer;  // the value in decimal: "15"
  int64_t value = 0;
};

// How a trace is written. The canonical trace (merge = 0) takes one operation per line. With
// merge > 0 a line may take two, as people write worked solutions: where the operation just
// reduced leaves its parent ready (the parent is then the next step), both go on one line
// ("7+1*15=22") with probability `merge`. The problem and its value do not depend on the style.
struct TraceStyle {
  double merge = 0;
};

// Problem `index` of `seed` at one difficulty.
Problem generate(uint64_t seed, int64_t index, int difficulty, const TraceStyle& style = {});

// A dataset's mix of difficulties: problem i's level is drawn uniformly from [lo, hi], again
// counter-based, so a mixed dataset is reproducible problem by problem too.
struct DifficultyRange {
  int lo = kMinDifficulty;
  int hi = kMaxDifficulty;
};
int mixed_difficulty(uint64_t seed, int64_t index, DifficultyRange range);
Problem generate(uint64_t seed, int64_t index, DifficultyRange range, const TraceStyle& style = {});

// "D", "A-B" or "mix" (every level); throws on anything else.
DifficultyRange parse_difficulty(std::string_view s);

// The assistant turn in DeepSeek-R1's layout: "<think>\n" trace "\n</think>\n\nAnswer: 15".
std::string r1_completion(const Problem& p);
// The same with the thinking forced empty ("<think>\n\n</think>\n\nAnswer: 15"), for the
// ablation that answers without thinking.
std::string no_think_completion(const Problem& p);
// What the ablation appends to the generation prompt so that the model answers at once.
constexpr std::string_view kNoThinkPrefix = "<think>\n\n</think>\n\n";
constexpr std::string_view kAnswerPrefix = "Answer: ";

struct GradeOpts {
  // The completion follows a prompt that already opened the thinking (R1's generation prompt
  // ends in "<think>\n"), so it starts inside the think block.
  bool think_opened = false;
};

struct Graded {
  bool formatted = false;         // <think>…</think> then only the answer line
  bool correct = false;           // an answer line was found and equals the value
  std::optional<int64_t> answer;  // that answer line's integer
};

// Grades any text; never throws. See docs/nano-r1-task.md, "Checking an answer".
Graded grade(std::string_view completion, int64_t expected, const GradeOpts& opts = {});
inline Graded grade(std::string_view completion, const Problem& p, const GradeOpts& opts = {}) {
  return grade(completion, p.value, opts);
}

// The rule rewards: 1 or 0.
double format_reward(std::string_view completion, const GradeOpts& opts = {});
double accuracy_reward(std::string_view completion, const Problem& p, const GradeOpts& opts = {});

}  // namespace fathom::tasks
