// evaluate.h: the chat prompt, the no-think suffix and the stop ids for nano-R1's template (whose
// generation cue opens the think block), and evaluate_arith's bookkeeping on an untrained model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "model/model.h"
#include "tasks/arith.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/evaluate.h"

namespace fathom::train {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// The tiny test tokenizer (1024 ids, like the tiny DeepSeek-V3 fixture) with nano-R1's chat template.
struct NanoR1Dir {
  fs::path dir = fs::temp_directory_path() / ("fathom-evaluate-" + std::to_string(::getpid()));
  NanoR1Dir() {
    const fs::path tiny = fs::path(FATHOM_TEST_DATA) / "tokenizers/tiny";
    fs::create_directories(dir);
    fs::copy_file(tiny / "tokenizer.json", dir / "tokenizer.json", fs::copy_options::overwrite_existing);
    auto cfg = nlohmann::json::parse(slurp(tiny / "tokenizer_config.json"));
    cfg["chat_template"] = slurp(fs::path(FATHOM_SOURCE_DIR) / "scripts/nano-r1/chat_template.jinja");
    std::ofstream(dir / "tokenizer_config.json") << cfg.dump();
  }
  ~NanoR1Dir() { fs::remove_all(dir); }
};

const std::string kBos = "<｜begin▁of▁sentence｜>";

TEST(Evaluate, ChatPromptOpensTheThinkBlock) {
  NanoR1Dir d;
  const ChatTemplate tmpl = ChatTemplate::load(d.dir.string());
  const std::string p = chat_prompt(tmpl, "Compute: 2 + 3");
  EXPECT_EQ(p, kBos + "<｜User｜>Compute: 2 + 3<｜Assistant｜><think>\n");
  // The think block is open: the ablation only closes it.
  EXPECT_EQ(no_think_suffix(p), "\n</think>\n\n");
  EXPECT_EQ(p + no_think_suffix(p), kBos + "<｜User｜>Compute: 2 + 3<｜Assistant｜><think>\n\n</think>\n\n");
}

TEST(Evaluate, NoThinkSuffixIsTheWholeBlockWhenNoneIsOpen) {
  EXPECT_EQ(no_think_suffix("<｜User｜>hi<｜Assistant｜>"), "<think>\n\n</think>\n\n");
  EXPECT_EQ(no_think_suffix(""), "<think>\n\n</think>\n\n");
  EXPECT_EQ(no_think_suffix("<think>"), "<think>\n\n</think>\n\n");  // not yet opened: no newline
  EXPECT_EQ(no_think_suffix("x<think>\n"), "\n</think>\n\n");
}

TEST(Evaluate, StopIdsAreTheTokenizersAndTheConfigsEosOnce) {
  NanoR1Dir d;
  const Tokenizer tok = Tokenizer::load(d.dir.string());
  ASSERT_TRUE(tok.eos_id().has_value());
  ASSERT_EQ(*tok.eos_id(), 1);  // <｜end▁of▁sentence｜> in the tiny tokenizer
  ModelConfig cfg;
  cfg.eos_token_ids = {1};
  EXPECT_EQ(stop_ids(tok, cfg), (std::vector<int32_t>{1}));
  cfg.eos_token_ids = {7, 1, 9};
  EXPECT_EQ(stop_ids(tok, cfg), (std::vector<int32_t>{1, 7, 9}));
  cfg.eos_token_ids = {};
  EXPECT_EQ(stop_ids(tok, cfg), (std::vector<int32_t>{1}));
}

class EvaluateArith : public ::testing::Test {
 protected:
  void SetUp() override {
    LoadOpts lo;
    lo.threads = 1;
    model_ = load_model(std::string(FATHOM_TEST_DATA) + "/fixtures/tiny-deepseek-v3", lo);
  }
  EvalResult run(const EvalOpts& o) {
    const Tokenizer tok = Tokenizer::load(dir_.dir.string());
    const ChatTemplate tmpl = ChatTemplate::load(dir_.dir.string());
    return evaluate_arith(*model_, tok, tmpl, o);
  }
  static void expect_consistent(const EvalResult& r, const EvalOpts& o) {
    EXPECT_EQ(r.n, o.n);
    ASSERT_EQ(r.n_by_level.size(), size_t(tasks::kMaxDifficulty + 1));
    ASSERT_EQ(r.correct_by_level.size(), size_t(tasks::kMaxDifficulty + 1));
    EXPECT_EQ(std::accumulate(r.n_by_level.begin(), r.n_by_level.end(), int64_t(0)), o.n);
    EXPECT_EQ(std::accumulate(r.correct_by_level.begin(), r.correct_by_level.end(), int64_t(0)), r.correct);
    EXPECT_EQ(r.n_by_level[0], 0);
    // Levels as the task draws them for this seed and range.
    std::vector<int64_t> levels(size_t(tasks::kMaxDifficulty + 1), 0);
    for (int64_t i = 0; i < o.n; ++i) ++levels[size_t(tasks::mixed_difficulty(o.seed, i, o.difficulty))];
    EXPECT_EQ(r.n_by_level, levels);
    for (size_t d = 0; d < r.n_by_level.size(); ++d) EXPECT_LE(r.correct_by_level[d], r.n_by_level[d]) << d;
    EXPECT_GE(r.correct, 0);
    EXPECT_LE(r.correct, r.n);
    EXPECT_GE(r.formatted, 0);
    EXPECT_LE(r.formatted, r.n);
    EXPECT_GE(r.accuracy(), 0.0);
    EXPECT_LE(r.accuracy(), 1.0);
    EXPECT_DOUBLE_EQ(r.accuracy(), double(r.correct) / double(r.n));
    EXPECT_GT(r.generated, 0);
    EXPECT_LE(r.generated, o.n * o.max_new_tokens);
  }
  NanoR1Dir dir_;
  std::unique_ptr<Model> model_;
};

TEST_F(EvaluateArith, CountsAddUpAndTheSameSeedGivesTheSameResult) {
  EvalOpts o;
  o.n = 20;
  o.seed = 5;
  o.max_new_tokens = 6;
  o.max_slots = 6;  // fewer than the problems: slots are reused
  const EvalResult a = run(o);
  expect_consistent(a, o);
  const EvalResult b = run(o);
  EXPECT_EQ(a.correct, b.correct);
  EXPECT_EQ(a.formatted, b.formatted);
  EXPECT_EQ(a.n_by_level, b.n_by_level);
  EXPECT_EQ(a.correct_by_level, b.correct_by_level);
  EXPECT_EQ(a.generated, b.generated);

  // The batch size does not change what is generated (greedy).
  EvalOpts wide = o;
  wide.max_slots = 64;
  const EvalResult w = run(wide);
  EXPECT_EQ(w.generated, a.generated);
  EXPECT_EQ(w.correct, a.correct);
  EXPECT_EQ(w.formatted, a.formatted);
}

TEST_F(EvaluateArith, OneLevelAndNoThinking) {
  EvalOpts o;
  o.n = 9;
  o.seed = 11;
  o.difficulty = tasks::DifficultyRange{3, 3};
  o.think = false;
  o.max_new_tokens = 4;
  o.max_slots = 4;
  const EvalResult r = run(o);
  expect_consistent(r, o);
  EXPECT_EQ(r.n_by_level[3], 9);
}

}  // namespace
}  // namespace fathom::train
