// The outside reward program: what it is sent, how its numbers are read, and every way it can fail
// (exit status, signal, timeout, bad or missing lines), each with /bin/sh commands.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/error.h"
#include "train/reward_cmd.h"

namespace fathom::train {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

// This process's scratch directory, removed when the tests end.
struct ScratchRoot {
  fs::path dir = fs::temp_directory_path() / ("fathom-reward-" + std::to_string(getpid()));
  ScratchRoot() { fs::create_directories(dir); }
  ~ScratchRoot() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
const fs::path& scratch() {
  static const ScratchRoot root;
  return root.dir;
}

std::vector<RewardItem> make_items(size_t n) {
  std::vector<RewardItem> items(n);
  for (size_t i = 0; i < n; ++i) {
    items[i].prompt = "question " + std::to_string(i);
    items[i].completion = "answer " + std::to_string(i);
  }
  return items;
}

// The error message run_reward_cmd throws, or "" when it does not throw.
std::string error_of(const std::string& cmd, size_t n_items, double timeout_s = 20) {
  try {
    run_reward_cmd({cmd, timeout_s}, make_items(n_items));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Prints 1 for each completion containing "42", else 0 (keys are written sorted, so the
// completion's text is what lies between "completion":" and ","index").
TEST(RewardCmd, ScoresEachLineInOrder) {
  std::vector<RewardItem> items(5);
  const char* completions[] = {"the answer is 42", "41", "4 2", "x42y", ""};
  for (int i = 0; i < 5; ++i) {
    items[i].prompt = "what is 6*7? 42";  // the prompt holds 42 too; only the completion may count
    items[i].completion = completions[i];
  }
  const std::string cmd =
      R"(while IFS= read -r l; do case "$l" in *'"completion":"'*42*'","index"'*) echo 1;; *) echo 0;; esac; done)";
  std::vector<double> got = run_reward_cmd({cmd, 20}, items);
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    double want = items[i].completion.find("42") != std::string::npos ? 1.0 : 0.0;
    EXPECT_EQ(got[i], want) << "item " << i;
  }
}

TEST(RewardCmd, RewardObjectsBlankLinesAndSigns) {
  std::vector<double> got = run_reward_cmd({R"(awk '{print "{\"reward\": " NR/4 "}"}')", 20}, make_items(6));
  ASSERT_EQ(got.size(), 6u);
  for (int i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(got[i], (i + 1) / 4.0);

  got = run_reward_cmd({R"(cat >/dev/null; printf '\n 1 \n\n+2.5\r\n-3e-1\n{"reward": -7, "why": "x"}\n\n')", 20},
                       make_items(4));
  EXPECT_EQ(got, (std::vector<double>{1, 2.5, -0.3, -7}));
  got = run_reward_cmd({"cat >/dev/null; echo 1e-999", 20}, make_items(1));  // underflow is a tiny number
  ASSERT_EQ(got.size(), 1u);
  EXPECT_LT(std::abs(got[0]), 1e-300);
}

TEST(RewardCmd, NoItemsRunsNothing) {
  EXPECT_TRUE(run_reward_cmd({"exit 1", 20}, {}).empty());
}

// 20000 items of ~1 KB: neither a program that answers while it reads (its output fills the
// pipe while we still write) nor one that prints everything before reading deadlocks.
TEST(RewardCmd, LargeBatchDoesNotDeadlock) {
  const size_t n = 20000;
  std::vector<RewardItem> items = make_items(n);
  for (size_t i = 0; i < n; ++i) items[i].completion = std::string(1000, char('a' + i % 26));
  for (const char* cmd : {"awk '{print 0.5}'", "yes 0.5 | head -n 20000; cat >/dev/null"}) {
    std::vector<double> got = run_reward_cmd({cmd, 60}, items);
    ASSERT_EQ(got.size(), n) << cmd;
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], 0.5) << cmd << " item " << i;
  }
}

// A program that reads only part of its input (EPIPE on our side, no SIGPIPE death) is fine
// when it prints every number, and is named as having stopped reading when it does not.
TEST(RewardCmd, StoppingReadingEarly) {
  std::vector<RewardItem> items = make_items(3);
  items[0].completion = std::string(1 << 20, 'x');
  std::vector<double> got = run_reward_cmd({"head -c 10 >/dev/null; echo 1; echo 2; echo 3", 20}, items);
  EXPECT_EQ(got, (std::vector<double>{1, 2, 3}));
  try {
    run_reward_cmd({"head -c 10 >/dev/null; echo 1", 20}, items);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stopped reading"), std::string::npos) << e.what();
  }
}

TEST(RewardCmd, TimeoutKillsTheGroup) {
  const fs::path pidfile = scratch() / "bg.pid";
  const std::string cmd = "sleep 30 & echo $! > '" + pidfile.string() + "'; sleep 5";
  auto t0 = std::chrono::steady_clock::now();
  std::string msg = error_of(cmd, 2, 0.3);
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 2.0);
  EXPECT_GE(took, 0.29);
  EXPECT_NE(msg.find("timeout"), std::string::npos) << msg;
  EXPECT_NE(msg.find("0.3 s"), std::string::npos) << msg;
  EXPECT_NE(msg.find(cmd), std::string::npos) << msg;

  // The background sleep was in the group, so it is gone too (or a zombie awaiting its new parent).
  std::ifstream pf(pidfile);
  pid_t bg = 0;
  ASSERT_TRUE(pf >> bg);
  bool gone = false;
  for (int tries = 0; tries < 100 && !gone; ++tries) {
    std::ifstream stat("/proc/" + std::to_string(bg) + "/stat");
    std::string pid_s, comm, state;
    gone = !(stat >> pid_s >> comm >> state) || state == "Z";
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(gone) << "background process " << bg << " still running";
  if (!gone) kill(bg, SIGKILL);
}

TEST(RewardCmd, ExitStatusAndSignal) {
  std::string msg = error_of("cat >/dev/null; echo 1; echo 'grader-broke: no such file' >&2; exit 3", 1);
  EXPECT_NE(msg.find("status 3"), std::string::npos) << msg;
  EXPECT_NE(msg.find("grader-broke: no such file"), std::string::npos) << msg;

  // Only the tail of a long stderr is kept, and that tail is quoted.
  msg = error_of("cat >/dev/null; i=0; while [ $i -lt 2000 ]; do echo \"noise $i\" >&2; i=$((i+1)); done; "
                 "echo LAST-WORDS >&2; exit 1",
                 1);
  EXPECT_NE(msg.find("LAST-WORDS"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("noise 0\n"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 800u);

  msg = error_of("cat >/dev/null; kill -9 $$", 1);
  EXPECT_NE(msg.find("signal 9"), std::string::npos) << msg;
}

TEST(RewardCmd, CommandNotFound) {
  std::string msg = error_of("fathom-no-such-grader --x", 2);
  EXPECT_NE(msg.find("fathom-no-such-grader --x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("status 127"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not found"), std::string::npos) << msg;
}

TEST(RewardCmd, WrongCountOrBadLines) {
  std::string msg = error_of("cat >/dev/null; echo 1; echo 2", 3);
  EXPECT_NE(msg.find("printed 2 rewards for 3 items"), std::string::npos) << msg;
  msg = error_of("cat >/dev/null; for i in 1 2 3 4; do echo $i; done", 3);
  EXPECT_NE(msg.find("more than 3"), std::string::npos) << msg;
  msg = error_of("cat >/dev/null; true", 2);
  EXPECT_NE(msg.find("printed 0 rewards"), std::string::npos) << msg;

  for (const char* bad : {"abc", "1.5x", "0x10", "1 2", "{\"reward\": \"1\"}", "{\"score\": 1}", "{\"reward\": 1",
                          "[1]", "true"}) {
    msg = error_of(std::string("cat >/dev/null; echo 1; echo '") + bad + "'; echo 1", 3);
    EXPECT_NE(msg.find("line 2"), std::string::npos) << bad << ": " << msg;
    EXPECT_NE(msg.find("neither a number"), std::string::npos) << bad << ": " << msg;
  }
  for (const char* bad : {"nan", "inf", "-inf", "NaN", "1e999"}) {
    msg = error_of(std::string("cat >/dev/null; echo 1; echo '") + bad + "'", 2);
    EXPECT_NE(msg.find("non-finite"), std::string::npos) << bad << ": " << msg;
  }
}

TEST(RewardCmd, BadOptions) {
  EXPECT_THROW(run_reward_cmd({"", 20}, make_items(1)), Error);
  EXPECT_THROW(run_reward_cmd({"cat", 0}, make_items(1)), Error);
  std::vector<RewardItem> items = make_items(1);
  items[0].extra = json::array({1});
  EXPECT_THROW(run_reward_cmd({"cat", 20}, items), Error);
}

// The JSON lines the program receives: every key, escaping, the index, extra keys, and
// bytes that are not UTF-8 replaced rather than failing the batch.
TEST(RewardCmd, WritesOneJsonObjectPerItem) {
  const fs::path file = scratch() / "input.jsonl";
  std::vector<RewardItem> items(4);
  items[0] = {"p0", "line one\nline \"two\"\t\\", "42", json{{"task", "math"}, {"level", 3}}};
  items[1] = {"p1 ünï", "c1", "", json::object()};
  items[2] = {"p2", std::string("bad \xff byte"), "a2", json{{"answer", "from extra"}, {"index", -1}}};
  items[3] = {"", "", "", json{{"tests", json::array({"assert f(1) == 2"})}}};
  const std::string cmd = "cat > '" + file.string() + "'; awk '{print NR}' '" + file.string() + "'";
  std::vector<double> got = run_reward_cmd({cmd, 20}, items);
  EXPECT_EQ(got, (std::vector<double>{1, 2, 3, 4}));

  std::ifstream in(file);
  std::vector<json> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(json::parse(l));
  ASSERT_EQ(lines.size(), 4u);

  EXPECT_EQ(lines[0], (json{{"prompt", "p0"}, {"completion", "line one\nline \"two\"\t\\"}, {"answer", "42"},
                            {"index", 0}, {"task", "math"}, {"level", 3}}));
  EXPECT_EQ(lines[1], (json{{"prompt", "p1 ünï"}, {"completion", "c1"}, {"index", 1}}));
  EXPECT_FALSE(lines[1].contains("answer"));
  // The item's own answer and index win over extra keys of the same name.
  EXPECT_EQ(lines[2], (json{{"prompt", "p2"}, {"completion", "bad \xEF\xBF\xBD byte"}, {"answer", "a2"},
                            {"index", 2}}));
  EXPECT_EQ(lines[3], (json{{"prompt", ""}, {"completion", ""}, {"index", 3},
                            {"tests", json::array({"assert f(1) == 2"})}}));
}

// The output reader on its own (what the fuzz target drives): numbers and {"reward": x} lines,
// whitespace and blank lines ignored, a short output returned as is, and every bad line an
// error that names the command and the line.
TEST(RewardOutput, ReadsNumbersAndObjects) {
  EXPECT_EQ(parse_reward_output("1\n\n  -0.5 \r\n{\"reward\": 2e-1}\n+3", 4, "c"),
            (std::vector<double>{1, -0.5, 0.2, 3}));
  EXPECT_EQ(parse_reward_output("7\n", 3, "c"), (std::vector<double>{7}));
  EXPECT_TRUE(parse_reward_output("", 0, "c").empty());
  auto err = [](std::string_view out, size_t n) {
    try {
      parse_reward_output(out, n, "my-cmd");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  for (const char* bad : {"1\nabc\n", "1\n1 2\n", "1\n{\"reward\": \"1\"}\n", "1\n{\"score\": 1}\n", "1\n+\n",
                          "1\n0x10\n"}) {
    const std::string e = err(bad, 3);
    EXPECT_NE(e.find("my-cmd"), std::string::npos) << bad << ": " << e;
    EXPECT_NE(e.find("line 2"), std::string::npos) << bad << ": " << e;
  }
  for (const char* bad : {"nan", "inf", "-1e400"}) EXPECT_NE(err(bad, 1).find("non-finite"), std::string::npos) << bad;
  EXPECT_NE(err("1\n2\n", 1).find("more than 1"), std::string::npos);
}

}  // namespace
}  // namespace fathom::train
