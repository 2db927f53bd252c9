// A newcomer's first hour: the README's first commands work as written, help and option errors
// read well, and every fuzz target is documented and seeded (no-change rebuild: noop_build.sh).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace {
namespace fs = std::filesystem;

const std::string kBin = FATHOM_BINARY;
const fs::path kSrc = FATHOM_SOURCE_DIR;

struct Cmd {
  int status = -1;
  std::string out;  // stdout and stderr
};

Cmd sh(const std::string& cmd) {
  Cmd r;
  FILE* p = ::popen(("(" + cmd + ") 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// The lines of the README's first ```sh block, comments stripped.
std::vector<std::string> readme_first_commands() {
  std::istringstream in(slurp(kSrc / "README.md"));
  std::vector<std::string> cmds;
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (line.rfind("```", 0) == 0) {
      if (inside) break;
      inside = line == "```sh";
      continue;
    }
    if (!inside) continue;
    if (auto k = line.find("   #"); k != std::string::npos) line.resize(k);
    while (!line.empty() && line.back() == ' ') line.pop_back();
    cmds.push_back(line);
  }
  return cmds;
}

TEST(Readme, FirstLinesAreSetupTestAndTheMainJob) {
  const auto cmds = readme_first_commands();
  ASSERT_GE(cmds.size(), 3u);
  EXPECT_EQ(cmds[0], "./setup.sh");
  EXPECT_EQ(cmds[1], "./scripts/test.sh");
  EXPECT_EQ(cmds[2].rfind("./build/release/fathom run ", 0), 0u) << cmds[2];
}

TEST(Readme, TheThirdLineWorksAsWritten) {
  const auto cmds = readme_first_commands();
  ASSERT_GE(cmds.size(), 3u);
  // It runs the shipped default model (models/nano-r1): no --model, nothing to download. The
  // binary is the one under test (any preset).
  std::string line = cmds[2];
  EXPECT_EQ(line.find("--model"), std::string::npos) << line;
  line.replace(0, std::string("./build/release/fathom").size(), kBin);
  const Cmd r = sh("cd " + kSrc.string() + " && " + line);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has(r.out, "tok/s")) << r.out;
  EXPECT_TRUE(has(r.out, "[thinking]")) << r.out;
  // The line asks for 7+8*(9-3) = 7+48 = 55.
  ASSERT_NE(line.find("Compute: 7+8*(9-3)"), std::string::npos) << line;
  EXPECT_TRUE(has(r.out, "Answer: 55")) << r.out;
}

// `fathom chat` with no --model talks to the shipped nano-R1 as well, turn after turn.
TEST(DefaultModel, ChatAnswersWithoutAModelArgument) {
  const Cmd r = sh("cd " + kSrc.string() + " && printf 'Compute: 9-(5-2)\\nCompute: 3*4+2\\n' | " + kBin +
                   " chat --threads 2 --max-tokens 200");
  EXPECT_EQ(r.status, 0) << r.out;
  // 9-(5-2) = 6, then 3*4+2 = 14, each after its reasoning.
  const size_t first = r.out.find("Answer: 6"), second = r.out.find("Answer: 14");
  EXPECT_NE(first, std::string::npos) << r.out;
  EXPECT_NE(second, std::string::npos) << r.out;
  if (first != std::string::npos && second != std::string::npos) {
    EXPECT_LT(first, second) << r.out;
  }
  EXPECT_TRUE(has(r.out, "5-2=3")) << r.out;
}

TEST(Readme, SaysHowToGetAModelAndHowToFuzz) {
  const std::string readme = slurp(kSrc / "README.md");
  for (const char* s : {"huggingface-cli download", "--tokenizer", "init-random", "cmake --preset fuzz",
                        "-max_total_time", "fuzz/corpus/"})
    EXPECT_TRUE(has(readme, s)) << s;
}

TEST(Help, NoArgumentsPrintsTheUsage) {
  const Cmd r = sh(kBin);
  EXPECT_EQ(r.status, 0) << r.out;
  EXPECT_TRUE(has(r.out, "Usage:")) << r.out;
  for (const char* c : {"run", "chat", "serve", "bench", "init-random"}) EXPECT_TRUE(has(r.out, c)) << c;
  EXPECT_FALSE(has(r.out, "error")) << r.out;
}

// Every option of every command has a description, and a value option with a default shows it.
TEST(Help, DescribesEveryOptionWithItsDefault) {
  for (const char* cmd : {"run", "chat", "serve", "generate", "logits", "tokenize", "template", "bench",
                          "init-random", "quantize", "dequantize", "kl", "plot", "task", "tokenizer-train",
                          "train", "grad", "grpo", "eval"}) {
    const Cmd r = sh(kBin + " " + cmd + " --help");
    ASSERT_EQ(r.status, 0) << cmd << ": " << r.out;
    std::istringstream in(r.out);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string& l = lines[i];
      if (l.rfind("  -", 0) != 0) continue;
      // "  --opt TYPE   description", or the description alone on the next, deeper-indented line.
      const size_t gap = l.find("  ", 2);
      const bool described = (gap != std::string::npos && l.find_first_not_of(' ', gap) != std::string::npos) ||
                             (i + 1 < lines.size() && lines[i + 1].rfind("      ", 0) == 0 &&
                              lines[i + 1].find_first_not_of(' ') != std::string::npos &&
                              lines[i + 1][lines[i + 1].find_first_not_of(' ')] != '-');
      EXPECT_TRUE(described) << cmd << ": " << l;
    }
  }
  const Cmd run = sh(kBin + " run --help");
  for (const char* s : {"(default: 8192)", "(default: 0.95)", "(default: 2048)", "--tokenizer"})
    EXPECT_TRUE(has(run.out, s)) << s << " in\n" << run.out;
}

TEST(Errors, RangeErrorsNameTheRange) {
  struct Case {
    std::string args, want;
  };
  for (const Case& c : std::vector<Case>{
           {"run --model m -p hi --top-p 2", "--top-p: 2 is out of range: must be between 0 and 1"},
           {"run --model m -p hi -n 0", "must be 1 or more"},
           {"generate --model m --ids 1 -n 0", "must be 1 or more"},
           {"run --model m -p hi --temperature -1", "must be 0 or more"},
           {"serve --model m --port 70000", "must be between 0 and 65535"},
           {"bench --model m -P 0", "must be 1 or more"},
       }) {
    const Cmd r = sh(kBin + " " + c.args);
    EXPECT_NE(r.status, 0) << c.args << ": " << r.out;
    EXPECT_TRUE(has(r.out, c.want)) << c.args << ": " << r.out;
    EXPECT_FALSE(has(r.out, "0.000000")) << c.args << ": " << r.out;
  }
}

// -p is the prompt's text (run); bench's prompt-token count is -P.
TEST(Errors, DashPMeansThePromptOnly) {
  EXPECT_TRUE(has(sh(kBin + " run --help").out, "-p,--prompt"));
  const std::string bench = sh(kBin + " bench --help").out;
  EXPECT_TRUE(has(bench, "-P,--prompt")) << bench;
  EXPECT_FALSE(has(bench, "-p,")) << bench;
}

TEST(Fuzz, EveryTargetHasASeedCorpus) {
  int targets = 0;
  for (const auto& e : fs::directory_iterator(kSrc / "fuzz")) {
    if (e.path().extension() != ".cpp") continue;
    ++targets;
    const fs::path corpus = kSrc / "fuzz/corpus" / e.path().stem();
    EXPECT_TRUE(fs::is_directory(corpus) && !fs::is_empty(corpus)) << corpus;
  }
  EXPECT_GE(targets, 5);
}

// UBSan findings stop the fuzzer, and clang's -fsanitize=undefined leaves out float-cast-overflow.
TEST(Fuzz, PresetIsClangWithFatalUbsanAndFloatCasts) {
  const std::string presets = slurp(kSrc / "CMakePresets.json"), top = slurp(kSrc / "CMakeLists.txt");
  EXPECT_TRUE(has(presets, "\"CMAKE_CXX_COMPILER\": \"clang++\""));
  EXPECT_TRUE(has(top, "-fno-sanitize-recover=all"));
  EXPECT_TRUE(has(top, "float-cast-overflow"));
}

}  // namespace
