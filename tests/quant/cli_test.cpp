// `fathom bench --json` and `fathom kl` run on a tiny fixture and print sane figures.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "util.h"

namespace fathom {
namespace {

const std::string kBin = FATHOM_BINARY;

TEST(BenchCli, JsonHasSaneFields) {
  const std::string dir = test::fixture("tiny-deepseek-v2-lite");
  if (dir.empty()) GTEST_SKIP() << "no tiny-deepseek-v2-lite fixture";
  const auto r = test::run_cmd(kBin + " bench --model " + dir +
                               " --quant q8_0 -P 16 -n 8 --warmup 4 --threads 2 --bandwidth-mb 64 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out;
  EXPECT_EQ(j.at("quant"), "q8_0");
  EXPECT_EQ(j.at("threads"), 2);
  EXPECT_EQ(j.at("prompt_tokens"), 16);
  EXPECT_EQ(j.at("decode_tokens"), 8);
  EXPECT_GE(j.at("bandwidth_best_pass_gbs").get<double>(), j.at("bandwidth_gbs").get<double>());
  for (const char* k : {"prefill_tok_s", "decode_tok_s", "effective_gbs", "bandwidth_gbs", "roofline_tok_s",
                        "roofline_pct", "decode_ms_p50"})
    EXPECT_GT(j.at(k).get<double>(), 0.0) << k;
  const auto bpt = j.at("bytes_per_token").get<double>(), wb = j.at("weight_bytes").get<double>();
  EXPECT_GT(bpt, 0.0);
  EXPECT_LE(bpt, wb);  // a token reads at most every weight
  EXPECT_NEAR(j.at("effective_gbs").get<double>(), bpt * j.at("decode_tok_s").get<double>() / 1e9, 1e-6);
  EXPECT_NEAR(j.at("roofline_tok_s").get<double>(), j.at("bandwidth_gbs").get<double>() * 1e9 / bpt, 1e-3);
  EXPECT_GT(j.at("peak_rss_bytes").get<double>(), wb);  // the requantized weights are resident
}

TEST(BenchCli, HumanReadable) {
  const std::string dir = test::fixture("tiny-qwen2");
  if (dir.empty()) GTEST_SKIP() << "no tiny-qwen2 fixture";
  const auto r = test::run_cmd(kBin + " bench --model " + dir + " -P 8 -n 4 --threads 1 --no-bandwidth");
  ASSERT_EQ(r.status, 0) << r.out;
  for (const char* k : {"prefill", "decode", "read per decoded token", "peak resident"})
    EXPECT_NE(r.out.find(k), std::string::npos) << k << " in:\n" << r.out;
}

TEST(BenchCli, BreakdownAfterPrompt) {
  const std::string dir = test::fixture("tiny-llama3");
  if (dir.empty()) GTEST_SKIP() << "no tiny-llama3 fixture";
  const auto r = test::run_cmd(kBin + " bench --model " + dir +
                               " -P 12 -n 6 --threads 2 --no-bandwidth --decode-after-prompt --breakdown --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("decode_after_prompt"), true);
  EXPECT_EQ(j.at("bandwidth_gbs"), 0.0);
  const auto& b = j.at("decode_breakdown_ms");
  ASSERT_EQ(b.at("layers").size(), 2u);  // tiny-llama3 has two layers
  double sum = b.at("embed").get<double>() + b.at("head").get<double>();
  for (const auto& l : b.at("layers")) sum += l.get<double>();
  EXPECT_GT(sum, 0.0);
}

TEST(KlCli, ReportsSmallKlForQ8) {
  const std::string dir = test::fixture("tiny-deepseek-v2-lite");
  if (dir.empty()) GTEST_SKIP() << "no tiny-deepseek-v2-lite fixture";
  const auto r = test::run_cmd(kBin + " kl --model " + dir + " --quant q8_0 --seqs 2 --len 16 --threads 2");
  ASSERT_EQ(r.status, 0) << r.out;
  std::smatch m;
  const std::string out = r.out;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"((\d+) tokens, mean KL ([0-9.eE+-]+) nats.*top-1 agreement ([0-9.]+)%)")))
      << out;
  EXPECT_EQ(std::stoi(m[1]), 32);
  EXPECT_GE(std::stod(m[2]), 0.0);
  EXPECT_LT(std::stod(m[2]), 1e-3);
  EXPECT_GE(std::stod(m[3]), 90.0);
}

TEST(KlCli, GivenIdsAndQ4) {
  const std::string dir = test::fixture("tiny-llama3");
  if (dir.empty()) GTEST_SKIP() << "no tiny-llama3 fixture";
  const auto r = test::run_cmd(kBin + " kl --model " + dir + " --quant q4_0 --ids 1,5,9,200,17 --threads 1");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("5 tokens"), std::string::npos) << r.out;
}

TEST(KlCli, NeedsQuant) {
  const std::string dir = test::fixture("tiny-llama3");
  if (dir.empty()) GTEST_SKIP() << "no tiny-llama3 fixture";
  EXPECT_NE(test::run_cmd(kBin + " kl --model " + dir + " 2>/dev/null").status, 0);
}

// A batch decodes its sequences together, with drafts where asked.
TEST(BenchCli, BatchWithSpeculativeDrafts) {
  const std::string dir = test::fixture("tiny-deepseek-v3-mtp");
  if (dir.empty()) GTEST_SKIP() << "no tiny-deepseek-v3-mtp fixture";
  const auto r = test::run_cmd(kBin + " bench --model " + dir +
                               " -P 8 -n 6 -b 3 --threads 2 --no-bandwidth --speculative mtp --draft 2 --json");
  ASSERT_EQ(r.status, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("batch"), 3);
  EXPECT_GT(j.at("decode_tok_s").get<double>(), 0.0);
  const auto& s = j.at("speculative");
  EXPECT_GT(s.at("drafted").get<int64_t>(), 0);
  EXPECT_LE(s.at("accepted").get<int64_t>(), s.at("drafted").get<int64_t>());
  // Three sequences of six tokens, each step emitting at least one token per sequence.
  EXPECT_GE(s.at("tokens_per_step").get<double>(), 1.0);
}

}  // namespace
}  // namespace fathom

