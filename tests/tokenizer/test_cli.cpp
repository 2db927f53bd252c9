// `fathom tokenize` end to end.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace {

struct Result {
  int status;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

Result run(const std::string& args, const std::string& input) {
  const std::string base = ::testing::TempDir() + "/tok_cli_" + std::to_string(::getpid());
  std::ofstream(base + ".in") << input;
  const std::string cmd = std::string(FATHOM_BINARY) + " tokenize " + args + " < " + base + ".in > " + base +
                          ".out 2> " + base + ".err";
  const int status = std::system(cmd.c_str());
  return {status, slurp(base + ".out"), slurp(base + ".err")};
}

const std::string kModel = std::string("--model ") + FATHOM_TEST_DATA + "/tokenizers/deepseek-v3";

TEST(TokenizeCli, EncodesJsonl) {
  // Ids from the HF golden file.
  const Result r = run(kModel, "\"Hello, world!\"\n\"hello world\"\n\"\"\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "[19923,14,2058,3]\n[33310,2058]\n[]\n");
}

TEST(TokenizeCli, Decodes) {
  const Result r = run(kModel + " --decode", "[19923,14,2058,3]\n[0,33310]\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "\"Hello, world!\"\n\"<｜begin▁of▁sentence｜>hello\"\n");
}

TEST(TokenizeCli, MalformedLineFails) {
  const Result r = run(kModel, "\"ok\"\n{not json\n");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(run(kModel, "[1,2]\n").status, 0);
  EXPECT_NE(run("--model /nonexistent", "\"x\"\n").status, 0);
}

// A directory without tokenizer.json: the error names the file, where it was looked for, and
// the way out; --tokenizer is the same option as --model here.
TEST(TokenizeCli, MissingTokenizerSaysWhatAndWhere) {
  const std::string dir = ::testing::TempDir() + "/tok_cli_empty_" + std::to_string(::getpid());
  std::system(("mkdir -p " + dir).c_str());
  const Result r = run("--model " + dir, "\"x\"\n");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find(dir + "/tokenizer.json does not exist"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--tokenizer DIR"), std::string::npos) << r.err;
  const Result t = run(std::string("--tokenizer ") + FATHOM_TEST_DATA + "/tokenizers/deepseek-v3", "\"hello world\"\n");
  EXPECT_EQ(t.status, 0) << t.err;
  EXPECT_EQ(t.out, "[33310,2058]\n");
  std::system(("rm -rf " + dir).c_str());
}

}  // namespace
