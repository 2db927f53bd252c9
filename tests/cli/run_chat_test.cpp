// fathom run / fathom chat end to end on a tiny random DeepSeek-V3 with the real tokenizer:
// the streamed text is exactly the decode of the greedy ids `fathom generate` gives for the
// rendered prompt, R1 reasoning is shown apart, and a second turn reuses the cache.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom {
namespace {
namespace fs = std::filesystem;

std::string sh(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  ::pclose(p);
  return out;
}

class RunChat : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("fathom-runchat-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
    const fs::path src(FATHOM_SOURCE_DIR);
    sh(std::string(FATHOM_BINARY) + " init-random --config " + (src / "tests/server/tiny-v3-full.config.json").string() +
       " --out " + dir_.string() + " 2>&1");
    for (const char* f : {"tokenizer.json", "tokenizer_config.json"})
      fs::copy_file(src / "tests/data/tokenizers/deepseek-v3" / f, dir_ / f, fs::copy_options::overwrite_existing);
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }
  static void use_template(const std::string& jinja_file) {
    std::ifstream in(dir_ / "tokenizer_config.json");
    auto cfg = nlohmann::json::parse(in);
    std::ifstream t(fs::path(FATHOM_SOURCE_DIR) / "tests/data/templates" / jinja_file);
    std::stringstream ss;
    ss << t.rdbuf();
    cfg["chat_template"] = ss.str();
    std::ofstream(dir_ / "tokenizer_config.json") << cfg.dump();
  }
  static std::string greedy_text(const std::string& user, int n) {
    Tokenizer tok = Tokenizer::load(dir_.string());
    ChatTemplate tmpl = ChatTemplate::load(dir_.string());
    const std::string prompt = tmpl.render(nlohmann::json::array({{{"role", "user"}, {"content", user}}}), true);
    std::string ids;
    for (int32_t id : tok.encode(prompt)) ids += (ids.empty() ? "" : ",") + std::to_string(id);
    std::istringstream gen(sh(std::string(FATHOM_BINARY) + " generate --model " + dir_.string() + " --ids " + ids +
                              " -n " + std::to_string(n)));
    std::vector<int32_t> out;
    for (int32_t v; gen >> v;) {
      if (tok.eos_id() && v == *tok.eos_id()) break;
      out.push_back(v);
    }
    return tok.decode(out, /*skip_special=*/true);
  }
  static fs::path dir_;
};
fs::path RunChat::dir_;

TEST_F(RunChat, RunStreamsTheGreedyReply) {
  const std::string want = greedy_text("Hello there", 12);
  ASSERT_FALSE(want.empty());
  const std::string got =
      sh(std::string(FATHOM_BINARY) + " run --model " + dir_.string() + " -p 'Hello there' -n 12 --temperature 0 2>/dev/null");
  EXPECT_EQ(got, want + "\n");
}

TEST_F(RunChat, ReasoningIsShownApart) {
  use_template("deepseek-r1.jinja");  // its generation prompt opens <think>
  const std::string want = greedy_text("Why?", 10);
  const std::string got =
      sh(std::string(FATHOM_BINARY) + " run --model " + dir_.string() + " -p 'Why?' -n 10 --temperature 0 2>/dev/null");
  EXPECT_EQ(got, "[thinking]\n" + want + "\n");
  const std::string hidden = sh(std::string(FATHOM_BINARY) + " run --model " + dir_.string() +
                                " -p 'Why?' -n 10 --temperature 0 --hide-reasoning 2>/dev/null");
  EXPECT_EQ(hidden, "\n");
}

TEST_F(RunChat, ChatKeepsTheConversationAndReusesTheCache) {
  const std::string err = sh("printf 'Hi\\nAnd then?\\n' | " + std::string(FATHOM_BINARY) + " chat --model " +
                             dir_.string() + " -n 6 --temperature 0 2>&1 >/dev/null");
  // Two turns, each with a tok/s line; the second prompt starts with the first turn.
  size_t first = err.find("tok/s"), second = err.find("tok/s", first + 1);
  ASSERT_NE(first, std::string::npos) << err;
  ASSERT_NE(second, std::string::npos) << err;
  EXPECT_EQ(err.find(" 0 from cache", second), std::string::npos) << err;
}

// A checkpoint without tokenizer files: run says which file is missing, and --tokenizer
// borrows them from another directory (the reply is the same as with them in place).
TEST_F(RunChat, TokenizerFromAnotherDirectory) {
  const fs::path bare = dir_.string() + "-bare";
  fs::create_directories(bare);
  for (const auto& e : fs::directory_iterator(dir_))
    if (e.path().filename().string().rfind("tokenizer", 0) != 0)
      fs::create_symlink(e.path(), bare / e.path().filename());
  const std::string base =
      std::string(FATHOM_BINARY) + " run --model " + bare.string() + " -p 'Hello there' -n 8 --temperature 0";
  const std::string err = sh(base + " 2>&1 >/dev/null");
  EXPECT_NE(err.find((bare / "tokenizer.json").string() + " does not exist"), std::string::npos) << err;
  const std::string got = sh(base + " --tokenizer " + dir_.string() + " 2>/dev/null");
  const std::string want = sh(std::string(FATHOM_BINARY) + " run --model " + dir_.string() +
                              " -p 'Hello there' -n 8 --temperature 0 2>/dev/null");
  EXPECT_FALSE(want.empty());
  EXPECT_EQ(got, want);
  fs::remove_all(bare);
}

TEST_F(RunChat, BadInputIsAClearError) {
  const std::string out = sh(std::string(FATHOM_BINARY) + " run --model /nonexistent -p hi 2>&1; echo rc=$?");
  EXPECT_NE(out.find("fathom: error:"), std::string::npos);
  EXPECT_NE(out.find("rc=1"), std::string::npos);
}

}  // namespace
}  // namespace fathom
