// The tokenizer and chat template a GGUF file carries (tokenizer.ggml.*, tokenizer.chat_template)
// against the HF files the fixtures were converted from: tests/data/tokenizers/tiny is the
// tokenizer.json / tokenizer_config.json of every tiny GGUF.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/gguf.h"
#include "io/gguf_config.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom {
namespace {

const std::string kData = FATHOM_TEST_DATA;
const std::string kGguf = kData + "/gguf/tiny-qwen2.BF16.gguf";
const std::string kHf = kData + "/tokenizers/tiny";

TEST(GgufTokenizer, EncodesLikeTheHfTokenizer) {
  const Tokenizer g = Tokenizer::load(kGguf), hf = Tokenizer::load(kHf);
  ASSERT_EQ(g.vocab_size(), hf.vocab_size());
  const char* texts[] = {
      "hi",
      "Hello, world! It's 2026: 12345 apples cost $3.50.",
      "  leading spaces\n\n\ttabs and\r\nnewlines   ",
      "中文混合English和数字123",
      "ひらがなカタカナ",
      "<｜begin▁of▁sentence｜>special<｜end▁of▁sentence｜> tokens",
      "don't can't we'll I'M",
      "emoji 🙂 and accents: café naïve",
  };
  for (const char* t : texts) EXPECT_EQ(g.encode(t), hf.encode(t)) << t;
  EXPECT_EQ(g.bos_id(), hf.bos_id());
  EXPECT_EQ(g.eos_id(), hf.eos_id());
  for (int32_t id = 0; id < g.vocab_size(); ++id) {
    ASSERT_EQ(g.token_text(id), hf.token_text(id)) << id;
    ASSERT_EQ(g.is_special(id), hf.is_special(id)) << id;
  }
  const std::vector<int32_t> ids = hf.encode("round trip: 中文 123 ok");
  EXPECT_EQ(g.decode(ids), hf.decode(ids));
}

// The deepseek-v3 pre-tokenizer name stands for the Split regexes of DeepSeek-V3's own file.
TEST(GgufTokenizer, DeepseekPreTokenizerIsDeepseekV3s) {
  const GgufModel m = GgufModel::open(kGguf);
  ASSERT_EQ(m.metadata().get_str("tokenizer.ggml.pre"), "deepseek-v3");
  const auto ours = nlohmann::json::parse(gguf_tokenizer_json(m.metadata()));
  std::ifstream f(kData + "/tokenizers/deepseek-v3/tokenizer.json");
  const auto real = nlohmann::json::parse(f);
  ASSERT_EQ(ours["pre_tokenizer"]["pretokenizers"].size(), real["pre_tokenizer"]["pretokenizers"].size());
  for (size_t i = 0; i < real["pre_tokenizer"]["pretokenizers"].size(); ++i) {
    const auto &a = ours["pre_tokenizer"]["pretokenizers"][i], &b = real["pre_tokenizer"]["pretokenizers"][i];
    EXPECT_EQ(a["type"], b["type"]) << i;
    if (b["type"] == "Split") {
      EXPECT_EQ(a["pattern"], b["pattern"]) << i;
    }
  }
}

TEST(GgufTokenizer, ChatTemplateRendersLikeTheHfConfig) {
  const ChatTemplate g = ChatTemplate::load(kGguf), hf = ChatTemplate::load(kHf);
  const auto msgs = nlohmann::json::array({{{"role", "system"}, {"content", "Be brief."}},
                                           {{"role", "user"}, {"content", "hi"}},
                                           {{"role", "assistant"}, {"content", "hello"}},
                                           {{"role", "user"}, {"content", "again"}}});
  EXPECT_EQ(g.render(msgs, true), hf.render(msgs, true));
}

TEST(GgufTokenizer, UnknownPreTokenizerIsAnError) {
  GgufMetadata md("test.gguf");
  auto str = [](const char* s) {
    GgufValue v;
    v.type = GgufValueType::String;
    v.str = s;
    return v;
  };
  md.add("tokenizer.ggml.model", str("gpt2"));
  md.add("tokenizer.ggml.pre", str("no-such-pre"));
  GgufValue tokens;
  tokens.type = GgufValueType::Array;
  tokens.elem = GgufValueType::String;
  tokens.strings = {"a", "b"};
  tokens.count = 2;
  md.add("tokenizer.ggml.tokens", tokens);
  try {
    gguf_tokenizer_json(md);
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos) << e.what();
  }
}

// `fathom run` with nothing but the GGUF file: weights, tokenizer and chat template.
TEST(GgufTokenizer, RunWithOnlyTheFile) {
  for (const char* f : {"tiny-deepseek-v3.Q8_0.gguf", "tiny-llama3.BF16.gguf"}) {
    const std::string cmd =
        std::string(FATHOM_BINARY) + " run --model " + kData + "/gguf/" + f + " -p hi -n 4 --threads 1 2>&1; echo rc=$?";
    FILE* p = ::popen(cmd.c_str(), "r");
    ASSERT_TRUE(p);
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    ::pclose(p);
    EXPECT_NE(out.find("4 tokens"), std::string::npos) << f << ": " << out;
    EXPECT_NE(out.find("rc=0"), std::string::npos) << f << ": " << out;
  }
}

}  // namespace
}  // namespace fathom
