// The arithmetic task: problems are reproducible, every trace step is checked by an evaluator
// written here from the grammar in docs/nano-r1-task.md, and grading survives any text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tasks/arith.h"
#include "tasks/arith_data.h"

namespace {
using namespace fathom::tasks;

// expr := term (('+' | '-') term)* ; term := factor ('*' factor)* ; factor := number | '(' expr ')'
struct Eval {
  std::string_view s;
  size_t i = 0;
  int ops = 0;
  bool ok = true;
  std::vector<int64_t> numbers;

  int64_t expr() {
    int64_t v = term();
    while (ok && i < s.size() && (s[i] == '+' || s[i] == '-')) {
      const char op = s[i++];
      ++ops;
      const int64_t r = term();
      v = op == '+' ? v + r : v - r;
    }
    return v;
  }
  int64_t term() {
    int64_t v = factor();
    while (ok && i < s.size() && s[i] == '*') {
      ++i, ++ops;
      v *= factor();
    }
    return v;
  }
  int64_t factor() {
    if (i < s.size() && s[i] == '(') {
      ++i;
      const int64_t v = expr();
      if (i >= s.size() || s[i] != ')') ok = false;
      ++i;
      return v;
    }
    if (i >= s.size() || s[i] < '0' || s[i] > '9') {
      ok = false;
      return 0;
    }
    int64_t v = 0;
    const size_t b = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
    if (i - b > 1 && s[b] == '0') ok = false;  // no leading zeros
    numbers.push_back(v);
    return v;
  }
};

struct Parsed {
  int64_t value = 0;
  int ops = 0;
  std::vector<int64_t> numbers;
};

std::optional<Parsed> evaluate(std::string_view s) {
  Eval e;
  e.s = s;
  const int64_t v = e.expr();
  if (!e.ok || e.i != s.size()) return std::nullopt;
  return Parsed{v, e.ops, e.numbers};
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Does `next` follow from `prev` by replacing one occurrence of `calc` ("a+b"), or of "(a+b)",
// with `result`?
bool one_reduction(const std::string& prev, const std::string& calc, const std::string& result,
                   const std::string& next) {
  for (size_t k = prev.find(calc); k != std::string::npos; k = prev.find(calc, k + 1)) {
    const size_t e = k + calc.size();
    if ((k > 0 && is_digit(prev[k - 1])) || (e < prev.size() && is_digit(prev[e]))) continue;
    if (prev.substr(0, k) + result + prev.substr(e) == next) return true;
    if (k > 0 && e < prev.size() && prev[k - 1] == '(' && prev[e] == ')' &&
        prev.substr(0, k - 1) + result + prev.substr(e + 1) == next)
      return true;
  }
  return false;
}

// Checks every line of p's trace against the evaluator above; returns what was wrong, or "".
// A line may take up to `max_ops` operations (2 for a merged trace).
std::string check_trace(const Problem& p, int max_ops = 1) {
  const std::string pre = "Compute: ";
  if (!p.prompt.starts_with(pre)) return "prompt";
  std::string expr = p.prompt.substr(pre.size());
  const std::vector<std::string> ls = lines(p.trace);
  for (size_t k = 0; k < ls.size(); ++k) {
    const std::string& l = ls[k];
    const size_t eq = l.find('='), semi = l.find("; ");
    if (eq == std::string::npos) return "no '=' in " + l;
    const std::string calc = l.substr(0, eq);
    const std::string result = l.substr(eq + 1, semi == std::string::npos ? std::string::npos : semi - eq - 1);
    const auto c = evaluate(calc);
    const auto r = evaluate(result);
    if (!c || c->ops < 1 || c->ops > max_ops || !r || r->ops != 0) return "step is not 'a op b=c': " + l;
    if (c->value != r->value) return "wrong arithmetic: " + l;
    if (r->value < 0 || r->value > 99) return "value out of range: " + l;
    const bool last = k + 1 == ls.size();
    if (last) {
      if (semi != std::string::npos) return "last step has a rest: " + l;
      if (r->value != p.value || evaluate(expr)->ops != c->ops || expr.find(calc) == std::string::npos)
        return "last step: " + l;
      continue;
    }
    if (semi == std::string::npos) return "missing rest: " + l;
    const std::string next = l.substr(semi + 2);
    const auto n = evaluate(next);
    if (!n || n->value != p.value) return "rest changes the value: " + l;
    if (!one_reduction(expr, calc, result, next)) return "not one reduction of '" + expr + "': " + l;
    expr = next;
  }
  return "";
}

TEST(Arith, SameSeedAndIndexGiveTheSameProblem) {
  for (int d = kMinDifficulty; d <= kMaxDifficulty; ++d)
    for (int64_t i : {0, 1, 7, 123456789}) {
      const Problem a = generate(42, i, d), b = generate(42, i, d);
      EXPECT_EQ(a.prompt, b.prompt);
      EXPECT_EQ(a.trace, b.trace);
      EXPECT_EQ(a.value, b.value);
    }
}

TEST(Arith, SeedsAndIndicesGiveDifferentProblems) {
  const int d = 4;
  int same_seed = 0, same_index = 0;
  std::set<std::string> distinct;
  for (int64_t i = 0; i < 200; ++i) {
    same_seed += generate(1, i, d).prompt == generate(2, i, d).prompt;
    same_index += generate(1, i, d).prompt == generate(1, i + 1, d).prompt;
    distinct.insert(generate(1, i, d).prompt);
  }
  EXPECT_LT(same_seed, 5);
  EXPECT_LT(same_index, 5);
  EXPECT_GT(distinct.size(), 190u);
}

TEST(Arith, EveryTraceStepIsCorrectAndTheAnswerIsTheValue) {
  for (uint64_t seed : {0ull, 99ull}) {
    for (int d = kMinDifficulty; d <= kMaxDifficulty; ++d) {
      for (int64_t i = 0; i < 400; ++i) {
        const Problem p = generate(seed, i, d);
        SCOPED_TRACE(p.prompt + "\n" + p.trace);
        const auto e = evaluate(p.prompt.substr(9));
        ASSERT_TRUE(e);
        EXPECT_EQ(e->value, p.value);
        EXPECT_EQ(p.answer, std::to_string(e->value));
        EXPECT_EQ(p.difficulty, d);
        EXPECT_EQ(e->ops, level(d).ops);
        for (int64_t x : e->numbers) EXPECT_LE(x, level(d).max_operand);
        EXPECT_EQ(check_trace(p), "");
      }
    }
  }
}

TEST(Arith, StepsGrowWithDifficulty) {
  double prev_len = 0;
  for (int d = kMinDifficulty; d <= kMaxDifficulty; ++d) {
    if (d > kMinDifficulty) {
      EXPECT_GT(level(d).ops, level(d - 1).ops);
    }
    double len = 0;
    for (int64_t i = 0; i < 300; ++i) {
      const Problem p = generate(5, i, d);
      EXPECT_EQ(int(lines(p.trace).size()), level(d).ops);
      len += double(p.trace.size()) / 300;
    }
    EXPECT_GT(len, prev_len) << "difficulty " << d;
    prev_len = len;
  }
  EXPECT_THROW(level(0), fathom::Error);
  EXPECT_THROW(generate(0, 0, kMaxDifficulty + 1), fathom::Error);
}

// The expression after each line ("rest"), the last line's value for the last.
std::vector<std::string> rests(const std::string& trace) {
  std::vector<std::string> out;
  for (const std::string& l : lines(trace)) {
    const size_t semi = l.find("; ");
    out.push_back(semi == std::string::npos ? l.substr(l.find('=') + 1) : l.substr(semi + 2));
  }
  return out;
}

// A merged trace is the canonical one with some lines joined: its rests are the canonical rests
// with one left out per merged line, so every merged line does the next two canonical steps.
TEST(Arith, MergedTracesJoinTheNextTwoCanonicalSteps) {
  for (double merge : {0.25, 0.5, 1.0}) {
    for (int d = kMinDifficulty; d <= kMaxDifficulty; ++d) {
      for (int64_t i = 0; i < 300; ++i) {
        const Problem c = generate(21, i, d), m = generate(21, i, d, {.merge = merge});
        SCOPED_TRACE(m.prompt + "\n" + m.trace);
        EXPECT_EQ(m.prompt, c.prompt);
        EXPECT_EQ(m.value, c.value);
        EXPECT_EQ(check_trace(m, 2), "");
        const std::vector<std::string> cr = rests(c.trace), mr = rests(m.trace);
        const std::vector<std::string> ml = lines(m.trace);
        size_t k = 0;
        for (size_t j = 0; j < ml.size(); ++j) {
          k += evaluate(ml[j].substr(0, ml[j].find('=')))->ops;
          ASSERT_LE(k, cr.size());
          EXPECT_EQ(mr[j], cr[k - 1]);
        }
        EXPECT_EQ(k, cr.size());
        // The same problem and style give the same trace.
        EXPECT_EQ(generate(21, i, d, {.merge = merge}).trace, m.trace);
      }
    }
  }
}

// merge = 0 is the canonical trace. merge = 1 joins wherever it can: a level-2 problem's first
// step always leaves its parent ready, so it takes one line. In between, the share of merged
// lines follows the probability.
TEST(Arith, MergeProbabilitySetsHowOftenLinesJoin) {
  auto merged_share = [](double merge) {
    int merged = 0, all = 0;
    for (int64_t i = 0; i < 3000; ++i) {
      for (const std::string& l : lines(generate(4, i, 4, {.merge = merge}).trace)) {
        merged += evaluate(l.substr(0, l.find('=')))->ops == 2;
        ++all;
      }
    }
    return double(merged) / all;
  };
  for (int64_t i = 0; i < 200; ++i) EXPECT_EQ(generate(8, i, 5, {.merge = 0}).trace, generate(8, i, 5).trace);
  EXPECT_EQ(merged_share(0), 0);
  const double q2 = merged_share(0.2), q5 = merged_share(0.5), q8 = merged_share(0.8), q1 = merged_share(1);
  EXPECT_GT(q2, 0.05);
  EXPECT_LT(q2, q5);
  EXPECT_LT(q5, q8);
  EXPECT_LT(q8, q1);
  for (int64_t i = 0; i < 200; ++i) {
    const Problem p = generate(6, i, 2, {.merge = 1});
    EXPECT_EQ(p.trace, p.prompt.substr(9) + "=" + p.answer);
    EXPECT_EQ(generate(6, i, 1, {.merge = 1}).trace, generate(6, i, 1).trace);  // one step: nothing to join
  }
  EXPECT_THROW(generate(0, 0, 3, {.merge = 1.5}), fathom::Error);
  EXPECT_THROW(generate(0, 0, 3, {.merge = -0.1}), fathom::Error);
  EXPECT_THROW(generate(0, 0, 3, {.merge = std::nan("")}), fathom::Error);
}

// A byte-level BPE token covers at least one byte, so bytes bound tokens. Chat markup adds a few
// special tokens (BOS, user, assistant, end of sentence) on top.
TEST(Arith, ProblemsAreShort) {
  const size_t bound[kMaxDifficulty] = {50, 70, 95, 125, 155, 190};
  for (int d = kMinDifficulty; d <= kMaxDifficulty; ++d) {
    size_t most = 0;
    double mean = 0;
    const int n = 2000;
    for (int64_t i = 0; i < n; ++i) {
      const Problem p = generate(11, i, d);
      const size_t bytes = p.prompt.size() + r1_completion(p).size();
      most = std::max(most, bytes);
      mean += double(bytes) / n;
    }
    std::printf("difficulty %d: prompt + completion %.1f bytes on average, %zu at most\n", d, mean, most);
    EXPECT_LE(most, bound[d - 1]) << "difficulty " << d;
  }
}

TEST(Arith, MixedDifficultiesCoverTheRangeEvenly) {
  std::map<int, int> counts;
  for (int64_t i = 0; i < 6000; ++i) {
    const int d = mixed_difficulty(3, i, {2, 5});
    ++counts[d];
    EXPECT_EQ(d, mixed_difficulty(3, i, {2, 5}));
    EXPECT_EQ(generate(3, i, DifficultyRange{2, 5}).prompt, generate(3, i, d).prompt);
  }
  ASSERT_EQ(counts.size(), 4u);
  for (auto [d, c] : counts) {
    EXPECT_GE(d, 2);
    EXPECT_LE(d, 5);
    EXPECT_NEAR(c, 1500, 150) << d;
  }
  EXPECT_EQ(parse_difficulty("3").lo, 3);
  EXPECT_EQ(parse_difficulty("3").hi, 3);
  EXPECT_EQ(parse_difficulty("2-4").hi, 4);
  EXPECT_EQ(parse_difficulty("mix").lo, kMinDifficulty);
  EXPECT_EQ(parse_difficulty("mix").hi, kMaxDifficulty);
  for (const char* bad : {"", "0", "7", "4-2", "x", "1-", "-3", "2-9"})
    EXPECT_THROW(parse_difficulty(bad), fathom::Error) << bad;
}

TEST(Grade, CanonicalCompletionsPass) {
  const Problem p = generate(7, 3, 4);
  const std::string c = r1_completion(p);
  EXPECT_EQ(c, "<think>\n" + p.trace + "\n</think>\n\nAnswer: " + std::to_string(p.value));
  Graded g = grade(c, p);
  EXPECT_TRUE(g.formatted);
  EXPECT_TRUE(g.correct);
  EXPECT_EQ(g.answer, p.value);
  EXPECT_EQ(format_reward(c), 1.0);
  EXPECT_EQ(accuracy_reward(c, p), 1.0);
  // After R1's generation prompt, which ends in "<think>\n", the completion starts inside.
  g = grade(c.substr(8), p, {.think_opened = true});
  EXPECT_TRUE(g.formatted && g.correct);
  EXPECT_FALSE(grade(c, p, {.think_opened = true}).formatted);  // a second <think>
  // Trailing whitespace (a generation's final newline) is allowed.
  EXPECT_TRUE(grade(c + "\n", p).formatted);
  // The no-thinking form is well formed too.
  const std::string nt = no_think_completion(p);
  EXPECT_EQ(nt, "<think>\n\n</think>\n\nAnswer: " + std::to_string(p.value));
  EXPECT_TRUE(grade(nt, p).formatted && grade(nt, p).correct);
}

TEST(Grade, WrongOrMangledCompletionsFail) {
  const Problem p = generate(7, 3, 4);
  const std::string v = std::to_string(p.value), w = std::to_string(p.value + 1);
  const std::string think = "<think>\n" + p.trace + "\n</think>\n\n";
  struct Case {
    std::string text;
    bool formatted, correct;
  };
  for (const Case& c : std::vector<Case>{
           {think + "Answer: " + w, true, false},                        // wrong answer
           {p.trace + "\n</think>\n\nAnswer: " + v, false, true},        // no <think>
           {"<think>\n" + p.trace + "\n\nAnswer: " + v, false, false},   // never closed: still thinking
           {"<think>\n" + p.trace + "\n<think>\n\nAnswer: " + v, false, false},
           {"<thinK>\n" + p.trace + "\n</think>\n\nAnswer: " + v, false, true},
           {"<think>\n" + p.trace + "\n</thinking>\n\nAnswer: " + v, false, false},
           {"Answer: " + v, false, true},                                // no thinking at all
           {think + "Answer: " + v + "\nmore", false, false},            // junk after the answer
           {think + "Answer: " + v + " done", false, false},
           {think + "The answer is " + v, false, false},
           {think + "Answer:" + v, false, false},
           {think + "Answer: 0" + v, false, false},                      // leading zero
           {think + "Answer: +" + v, false, false},
           {think + "Answer: " + v + ".0", false, false},
           {think + "Answer: -0", false, false},
           {think + "Answer: 99999999999999999999999", false, false},    // no overflow
           {think + "  Answer: " + v, false, false},                     // the line starts with "Answer: "
           {think + "Answer: " + v + "\n\nAnswer: " + w, false, false},  // the last line counts
           {think + "Answer: " + w + "\n\nAnswer: " + v, false, true},
           {"<think>\n<think>\n" + p.trace + "\n</think>\n\nAnswer: " + v, false, true},
           {think + "</think>\n\nAnswer: " + v, false, true},
           {"", false, false},
           {"</think>", false, false},
       }) {
    const Graded g = grade(c.text, p);
    EXPECT_EQ(g.formatted, c.formatted) << c.text;
    EXPECT_EQ(g.correct, c.correct) << c.text;
    EXPECT_EQ(format_reward(c.text), c.formatted ? 1.0 : 0.0) << c.text;
    EXPECT_EQ(accuracy_reward(c.text, p), c.correct ? 1.0 : 0.0) << c.text;
  }
  EXPECT_EQ(grade(think + "Answer: -12", -12).answer, -12);
  EXPECT_TRUE(grade(think + "Answer: -12", -12).correct);
}

// Random splices of tags, answer lines, digits and arbitrary bytes: grading never throws, and
// what it reports is consistent.
TEST(Grade, SurvivesGarbage) {
  std::mt19937_64 rng(1234);
  const std::vector<std::string> pieces = {"<think>", "</think>", "<think>\n", "\n", "\n\n", "Answer: ", "Answer:",
                                           "1", "17", "-", "0", " ", "<", ">", "/", "think", "\xff", "\xe2\x96",
                                           std::string(1, '\0'), "=", ";", "3+4"};
  for (int n = 0; n < 20000; ++n) {
    std::string s;
    const int k = int(rng() % 12);
    for (int j = 0; j < k; ++j) {
      if (rng() % 4 == 0) {
        s += char(rng() % 256);
      } else {
        s += pieces[rng() % pieces.size()];
      }
    }
    Graded g;
    const bool opened = rng() % 2;
    ASSERT_NO_THROW(g = grade(s, 17, {.think_opened = opened})) << s;
    if (g.correct) {
      EXPECT_EQ(g.answer, 17);
    }
    if (g.formatted) {
      EXPECT_TRUE(g.answer.has_value());
    }
  }
}

TEST(Data, LinesAreTheDocumentedJson) {
  const Problem p = generate(9, 0, 2);
  const std::string q = "\"" + p.prompt + "\"";
  EXPECT_EQ(problem_line(p, 9, 0), "{\"prompt\":" + q + ",\"answer\":\"" + p.answer +
                                       "\",\"difficulty\":2,\"seed\":9,\"index\":0}");
  std::string esc = r1_completion(p);
  for (size_t k = 0; (k = esc.find('\n', k)) != std::string::npos; k += 2) esc.replace(k, 1, "\\n");
  EXPECT_EQ(sft_line(p), "{\"messages\":[{\"role\":\"user\",\"content\":" + q +
                             "},{\"role\":\"assistant\",\"content\":\"" + esc + "\"}]}");
  EXPECT_EQ(text_line(p), "{\"text\":\"" + p.prompt + "\\n" + esc + "\"}");
  EXPECT_NE(sft_line(p, false).find("<think>\\n\\n</think>\\n\\nAnswer: " + p.answer), std::string::npos);

  std::ostringstream out;
  DataOpts o;
  o.kind = DataKind::Problems;
  o.n = 50;
  o.seed = 9;
  o.difficulty = {2, 2};
  EXPECT_EQ(write_jsonl(out, o), 50);
  const std::vector<std::string> ls = lines(out.str());
  ASSERT_EQ(ls.size(), 50u);
  EXPECT_EQ(ls[0], problem_line(p, 9, 0));
  EXPECT_THROW(parse_data_kind("chat"), fathom::Error);
}

}  // namespace
