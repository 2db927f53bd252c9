// Generation, tracing and grading of the arithmetic task (docs/nano-r1-task.md).
#include "tasks/arith.h"

#include <charconv>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/random.h"

namespace fathom::tasks {
namespace {

// Per level: ops, operand range, value cap. Single-digit operands and values below 100 keep
// every step a small-table fact and the whole exchange short; depth comes from the op count.
constexpr Level kLevels[kMaxDifficulty] = {
    {1, 9, 99}, {2, 9, 99}, {3, 9, 99}, {4, 9, 99}, {5, 9, 99}, {6, 9, 99},
};

// Draw j of a problem is splitmix64(key + j * golden), i.e. the SplitMix64 sequence from key.
struct Draws {
  uint64_t key;
  uint64_t n = 0;
  uint64_t next() { return splitmix64(key + 0x9e3779b97f4a7c15ull * n++); }
  // Uniform in [0, m) by the high half of a 128-bit product (bias below 2^-58 for small m).
  int64_t below(int64_t m) { return int64_t((unsigned __int128)next() * uint64_t(m) >> 64); }
};

uint64_t problem_key(uint64_t seed, int64_t index, uint64_t tag) {
  return splitmix64(splitmix64(splitmix64(seed) ^ uint64_t(index)) ^ tag);
}

// An expression tree; leaves have op == 0.
struct Node {
  char op = 0;
  int64_t value = 0;
  int l = -1, r = -1;
};

struct Tree {
  std::vector<Node> nodes;
  int root = -1;
};

int64_t apply(char op, int64_t a, int64_t b) { return op == '+' ? a + b : op == '-' ? a - b : a * b; }
int prec(char op) { return op == '*' ? 2 : 1; }

// A random tree of `ops` operations, repaired bottom-up so that every value lies in
// [0, max_value]: a difference is taken larger minus smaller (its operands swap), a product over
// the cap becomes a sum, and a sum over the cap becomes a difference.
int build(Tree& t, Draws& d, int ops, const Level& lv) {
  Node n;
  if (ops == 0) {
    n.value = d.below(lv.max_operand + 1);
  } else {
    n.op = "+-*"[d.below(3)];
    const int left_ops = int(d.below(ops));
    n.l = build(t, d, left_ops, lv);
    n.r = build(t, d, ops - 1 - left_ops, lv);
    const int64_t a = t.nodes[n.l].value, b = t.nodes[n.r].value;
    if (n.op == '*' && a * b > lv.max_value) n.op = '+';
    if (n.op == '+' && a + b > lv.max_value) n.op = '-';
    if (n.op == '-' && a < b) std::swap(n.l, n.r);
    n.value = apply(n.op, t.nodes[n.l].value, t.nodes[n.r].value);
  }
  t.nodes.push_back(n);
  return int(t.nodes.size()) - 1;
}

// Parentheses exactly where the tree needs them: around a child that binds more loosely than
// its parent, or as tightly when it is the right operand. Printing then parsing left to right
// with the usual precedence gives back the same tree.
void print(const Tree& t, int i, std::string& out, char parent = 0, bool right = false) {
  const Node& n = t.nodes[i];
  if (!n.op) {
    out += std::to_string(n.value);
    return;
  }
  const bool paren = parent && (prec(n.op) < prec(parent) || (right && prec(n.op) == prec(parent)));
  if (paren) out += '(';
  print(t, n.l, out, n.op, false);
  out += n.op;
  print(t, n.r, out, n.op, true);
  if (paren) out += ')';
}

std::string print(const Tree& t) {
  std::string s;
  print(t, t.root, s);
  return s;
}

// The leftmost operation whose operands are both numbers (-1 when the tree is a number).
int leftmost_ready(const Tree& t, int i) {
  const Node& n = t.nodes[i];
  if (!n.op) return -1;
  if (!t.nodes[n.l].op && !t.nodes[n.r].op) return i;
  const int l = leftmost_ready(t, n.l);
  return l >= 0 ? l : leftmost_ready(t, n.r);
}

int parent_of(const Tree& t, int i) {
  for (int k = 0; k < int(t.nodes.size()); ++k)
    if (t.nodes[k].op && (t.nodes[k].l == i || t.nodes[k].r == i)) return k;
  return -1;
}

// One line per reduction: "a-b=c; rest", the last one "a-b=c". A merged line reduces the
// leftmost ready operation and its parent together: "7+1*15=22; rest". Only the parent can
// become ready by that reduction, and it is then the leftmost ready one, so a merged line
// always does the next two canonical steps. `style` draws only where a merge is possible.
std::string trace(Tree t, Draws& style, double merge) {
  std::string out;
  for (int i; (i = leftmost_ready(t, t.root)) >= 0;) {
    const int p = merge > 0 ? parent_of(t, i) : -1;
    const int sibling = p < 0 ? -1 : t.nodes[p].l == i ? t.nodes[p].r : t.nodes[p].l;
    // A uniform draw in [0, 1) from the top 53 bits.
    const bool two = sibling >= 0 && !t.nodes[sibling].op && double(style.next() >> 11) * 0x1p-53 < merge;
    const int done = two ? p : i;
    if (!out.empty()) out += '\n';
    print(t, done, out);  // "a-b", or the parent's sub-expression: no outer parentheses at the top
    out += '=' + std::to_string(t.nodes[done].value);
    t.nodes[i].op = 0;
    t.nodes[done].op = 0;
    if (done != t.root) out += "; " + print(t);
  }
  return out;
}

// A canonical decimal integer: -?(0|[1-9][0-9]*), at most 18 digits, and not "-0".
std::optional<int64_t> parse_int(std::string_view s) {
  const bool neg = !s.empty() && s[0] == '-';
  const std::string_view digits = s.substr(neg ? 1 : 0);
  if (digits.empty() || digits.size() > 18) return std::nullopt;
  for (char c : digits)
    if (c < '0' || c > '9') return std::nullopt;
  if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
  if (neg && digits == "0") return std::nullopt;
  int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);  // cannot overflow at 18 digits
  return v;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view trim_end(std::string_view s) {
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view trim_start(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  return s;
}

size_t count(std::string_view s, std::string_view part) {
  size_t n = 0;
  for (size_t k = s.find(part); k != std::string_view::npos; k = s.find(part, k + part.size())) ++n;
  return n;
}

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

// The integer of the final "Answer: N" line, taken from what follows the thinking.
std::optional<int64_t> final_answer(std::string_view s) {
  const size_t close = s.rfind(kClose);
  std::string_view tail = close == std::string_view::npos ? s : s.substr(close + kClose.size());
  if (tail.find(kOpen) != std::string_view::npos) return std::nullopt;  // still thinking
  tail = trim_end(tail);
  const size_t nl = tail.rfind('\n');
  const std::string_view line = nl == std::string_view::npos ? tail : tail.substr(nl + 1);
  if (!line.starts_with(kAnswerPrefix)) return std::nullopt;
  return parse_int(line.substr(kAnswerPrefix.size()));
}

}  // namespace

Level level(int difficulty) {
  if (difficulty < kMinDifficulty || difficulty > kMaxDifficulty)
    fail("difficulty {} is outside [{}, {}]", difficulty, kMinDifficulty, kMaxDifficulty);
  return kLevels[difficulty - 1];
}

Problem generate(uint64_t seed, int64_t index, int difficulty, const TraceStyle& style) {
  if (!(style.merge >= 0 && style.merge <= 1)) fail("the trace's merge probability {} is outside [0, 1]", style.merge);
  const Level lv = level(difficulty);
  Draws d{problem_key(seed, index, uint64_t(difficulty))};
  Tree t;
  t.root = build(t, d, lv.ops, lv);
  Problem p;
  p.difficulty = difficulty;
  p.prompt = "Compute: " + print(t);
  // The style has draws of its own (tag 256 + d), so the problem is the same in every style.
  Draws style_draws{problem_key(seed, index, 256 + uint64_t(difficulty))};
  p.trace = trace(t, style_draws, style.merge);
  p.value = t.nodes[t.root].value;
  p.answer = std::to_string(p.value);
  return p;
}

int mixed_difficulty(uint64_t seed, int64_t index, DifficultyRange range) {
  if (range.lo > range.hi) fail("difficulty range {}-{} is empty", range.lo, range.hi);
  level(range.lo), level(range.hi);  // both in bounds
  // Tag 0 is no difficulty, so the level's draw is independent of every problem's draws.
  Draws d{problem_key(seed, index, 0)};
  return range.lo + int(d.below(range.hi - range.lo + 1));
}

Problem generate(uint64_t seed, int64_t index, DifficultyRange range, const TraceStyle& style) {
  return generate(seed, index, mixed_difficulty(seed, index, range), style);
}

DifficultyRange parse_difficulty(std::string_view s) {
  if (s == "mix") return {};
  auto num = [&](std::string_view part) {
    const std::optional<int64_t> v = parse_int(part);
    if (!v || *v < kMinDifficulty || *v > kMaxDifficulty)
      fail("difficulty '{}': expected D, A-B or mix, with levels {}..{}", s, kMinDifficulty, kMaxDifficulty);
    return int(*v);
  };
  const size_t dash = s.find('-');
  if (dash == std::string_view::npos) return {num(s), num(s)};
  const DifficultyRange r{num(s.substr(0, dash)), num(s.substr(dash + 1))};
  if (r.lo > r.hi) fail("difficulty '{}': the range is empty", s);
  return r;
}

std::string r1_completion(const Problem& p) {
  return std::string(kOpen) + "\n" + p.trace + "\n" + std::string(kClose) + "\n\n" + std::string(kAnswerPrefix) +
         p.answer;
}

std::string no_think_completion(const Problem& p) {
  return std::string(kNoThinkPrefix) + std::string(kAnswerPrefix) + p.answer;
}

Graded grade(std::string_view completion, int64_t expected, const GradeOpts& opts) {
  std::string opened;
  if (opts.think_opened) {
    opened = std::string(kOpen) + "\n" + std::string(completion);
    completion = opened;
  }
  Graded g;
  g.answer = final_answer(completion);
  g.correct = g.answer && *g.answer == expected;
  // Formatted: "<think>\n", no other tag but one "</think>", then nothing but the answer line.
  if (g.answer && completion.starts_with(std::string(kOpen) + "\n") && count(completion, kOpen) == 1 &&
      count(completion, kClose) == 1) {
    const std::string_view tail = completion.substr(completion.find(kClose) + kClose.size());
    const std::string_view line = trim_end(trim_start(tail));
    g.formatted = line.find('\n') == std::string_view::npos;
  }
  return g;
}

double format_reward(std::string_view completion, const GradeOpts& opts) {
  return grade(completion, 0, opts).formatted ? 1.0 : 0.0;
}

double accuracy_reward(std::string_view completion, const Problem& p, const GradeOpts& opts) {
  return grade(completion, p, opts).correct ? 1.0 : 0.0;
}

}  // namespace fathom::tasks
