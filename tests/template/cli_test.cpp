// `fathom template` end to end on the DeepSeek-V3 fixture: text and ids as the reference.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace {

std::string run_cli(const std::string& args, const std::string& input_path) {
  std::string cmd = std::string(FATHOM_BINARY) + " template " + args + " < " + input_path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  return out;
}

TEST(TemplateCli, DeepSeekV3FixtureTextAndIds) {
  const std::string data = FATHOM_TEST_DATA;
  // Requests carry only messages, add_generation_prompt and extra keys (the fixture's "name"
  // rides along as an unused template global).
  std::string in_path = testing::TempDir() + "/fathom_chat_requests.jsonl";
  std::vector<nlohmann::json> want;
  {
    std::ifstream f(data + "/chat-deepseek-v3.jsonl");
    std::ofstream out(in_path);
    std::string line;
    while (std::getline(f, line)) {
      if (line.empty()) continue;
      auto c = nlohmann::ordered_json::parse(line);
      want.push_back(c);
      c.erase("text");
      c.erase("ids");
      out << c.dump() << "\n";
    }
  }
  ASSERT_FALSE(want.empty());
  std::string out = run_cli("--model " + data + "/tokenizers/deepseek-v3", in_path);
  std::istringstream lines(out);
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line)) {
    ASSERT_LT(i, want.size()) << line;
    auto got = nlohmann::json::parse(line);
    EXPECT_EQ(got["text"], want[i]["text"]) << want[i]["name"];
    EXPECT_EQ(got["ids"], want[i]["ids"]) << want[i]["name"];
    ++i;
  }
  EXPECT_EQ(i, want.size());
}

TEST(TemplateCli, ErrorsNameTheInputLine) {
  std::string in_path = testing::TempDir() + "/fathom_chat_bad.jsonl";
  std::ofstream(in_path) << "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n{\"messages\": 3}\n";
  std::string cmd = std::string(FATHOM_BINARY) + " template --text-only --model " + FATHOM_TEST_DATA +
                    "/tokenizers/deepseek-v3 < " + in_path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_NE(pclose(p), 0);
  EXPECT_NE(out.find("{\"text\":\"<｜begin▁of▁sentence｜><｜User｜>a\"}"), std::string::npos) << out;
  EXPECT_NE(out.find("stdin line 2"), std::string::npos) << out;
}

}  // namespace
