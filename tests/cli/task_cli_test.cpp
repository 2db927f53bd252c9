// fathom task: N reproducible JSONL lines per seed, written to stdout or a file; bad options fail
// with a message that names the option.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace {

struct Cmd {
  int status = -1;
  std::string out;
};

Cmd sh(const std::string& cmd) {
  Cmd r;
  FILE* p = ::popen((std::string(FATHOM_BINARY) + " " + cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

size_t occurrences(const std::string& s, const std::string& part) {
  size_t n = 0;
  for (size_t k = s.find(part); k != std::string::npos; k = s.find(part, k + 1)) ++n;
  return n;
}

size_t count_lines(const std::string& s, const std::string& starting) {
  std::istringstream in(s);
  size_t n = 0;
  for (std::string l; std::getline(in, l);) n += l.rfind(starting, 0) == 0;
  return n;
}

TEST(TaskCli, WritesReproducibleLinesOfEachKind) {
  const Cmd a = sh("task --kind problems --n 20 --seed 4 --difficulty 2-5");
  ASSERT_EQ(a.status, 0) << a.out;
  EXPECT_EQ(count_lines(a.out, "{\"prompt\":\"Compute: "), 20u) << a.out;
  EXPECT_EQ(sh("task --kind problems --n 20 --seed 4 --difficulty 2-5").out, a.out);
  EXPECT_NE(sh("task --kind problems --n 20 --seed 5 --difficulty 2-5").out, a.out);

  const Cmd sft = sh("task --kind sft --n 3 --difficulty 3");
  ASSERT_EQ(sft.status, 0) << sft.out;
  EXPECT_EQ(count_lines(sft.out, "{\"messages\":[{\"role\":\"user\",\"content\":\"Compute: "), 3u) << sft.out;
  EXPECT_NE(sft.out.find("\"content\":\"<think>\\n"), std::string::npos) << sft.out;

  const auto path = std::filesystem::temp_directory_path() / "fathom_task_cli_test.jsonl";
  const Cmd text = sh("task --kind text --n 7 --no-think --out " + path.string());
  ASSERT_EQ(text.status, 0) << text.out;
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  EXPECT_EQ(count_lines(ss.str(), "{\"text\":\"Compute: "), 7u) << ss.str();
  EXPECT_NE(ss.str().find("<think>\\n\\n</think>\\n\\nAnswer: "), std::string::npos) << ss.str();
  std::filesystem::remove(path);

  // --merge 1 joins a level-2 trace's two steps into one line: "<think>\nEXPR=VALUE\n</think>".
  const Cmd merged = sh("task --kind sft --n 5 --seed 4 --difficulty 2 --merge 1");
  ASSERT_EQ(merged.status, 0) << merged.out;
  const Cmd canonical = sh("task --kind sft --n 5 --seed 4 --difficulty 2");
  EXPECT_EQ(count_lines(merged.out, "{\"messages\""), 5u) << merged.out;
  EXPECT_EQ(count_lines(canonical.out, "{\"messages\""), 5u) << canonical.out;
  EXPECT_EQ(occurrences(merged.out, "; "), 0u) << merged.out;       // no line has a rest
  EXPECT_EQ(occurrences(canonical.out, "; "), 5u) << canonical.out;  // each first line has one
  EXPECT_EQ(sh("task --kind sft --n 5 --seed 4 --difficulty 2 --merge 0").out, canonical.out);
}

TEST(TaskCli, BadOptionsFail) {
  for (const char* args : {"task --difficulty 7", "task --difficulty 4-2", "task --kind chat", "task --n -1",
                           "task --merge 1.5", "task --merge -1", "task --merge x"}) {
    const Cmd r = sh(args);
    EXPECT_NE(r.status, 0) << args;
    EXPECT_NE(r.out.find("error"), std::string::npos) << args << ": " << r.out;
  }
}

}  // namespace
