// Completions logprobs through the Api with a scripted model: text_offset counts characters
// of the returned text, as OpenAI's does, and special tokens (absent from the text) add none.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "model/model.h"
#include "runtime/engine.h"
#include "server/api.h"
#include "tokenizer/tokenizer.h"

using namespace fathom;
using nlohmann::json;

namespace {

// Generates `script` after a prompt of `prompt_len` tokens, whatever the input.
class ScriptedModel : public Model {
 public:
  ScriptedModel(int64_t vocab, int64_t prompt_len, std::vector<int32_t> script)
      : be_(make_backend({1})), prompt_len_(prompt_len), script_(std::move(script)) {
    cfg_.vocab_size = vocab;
    cfg_.num_hidden_layers = 1;
  }
  const ModelConfig& config() const override { return cfg_; }
  int64_t kv_width() const override { return 1; }
  size_t weight_bytes() const override { return 0; }
  size_t active_bytes_per_token() const override { return 0; }
  Backend& backend() const override { return *be_; }
  void forward(const std::vector<SeqChunk>& batch, KvCache&, float* logits, const ForwardOpts&) override {
    const int64_t V = cfg_.vocab_size;
    for (const SeqChunk& c : batch)
      for (int64_t i = c.all_logits ? 0 : c.n - 1; i < c.n; ++i, logits += V) {
        const int64_t k = c.pos + i + 1 - prompt_len_;  // index of the token this row predicts
        std::fill(logits, logits + V, 0.f);
        logits[script_[size_t(std::clamp<int64_t>(k, 0, int64_t(script_.size()) - 1))]] = 100.f;
      }
  }

 private:
  ModelConfig cfg_;
  std::unique_ptr<Backend> be_;
  int64_t prompt_len_;
  std::vector<int32_t> script_;
};

struct Captured : http::Responder {
  int status = 0;
  std::string body;
  void respond(int s, std::string_view, std::string_view b) override { status = s, body = b; }
  bool start_stream(int s, std::string_view) override { return status = s, true; }
  bool write(std::string_view d) override { return body += d, true; }
  bool client_gone() override { return false; }
};

TEST(CompletionLogprobs, TextOffsetCountsCharactersOfTheReturnedText) {
  const Tokenizer tok = Tokenizer::load(std::string(FATHOM_TEST_DATA) + "/tokenizers/deepseek-v3");
  // "héllo", a special token, then "wörld": multi-byte characters and a token with no text.
  const std::vector<int32_t> a = tok.encode("h\xc3\xa9llo"), b = tok.encode(" w\xc3\xb6rld");
  const int32_t special = *tok.bos_id();
  ASSERT_TRUE(tok.is_special(special));
  std::vector<int32_t> script = a;
  script.push_back(special);
  script.insert(script.end(), b.begin(), b.end());
  const std::vector<int32_t> prompt = {1, 2, 3};
  ScriptedModel model(tok.vocab_size(), int64_t(prompt.size()), script);
  Engine engine(model, EngineOpts{.max_batch = 1, .max_ctx = 64});
  server::ApiDeps deps;
  deps.engine = &engine;
  deps.tokenizer = &tok;
  deps.model_id = "m";
  server::Api api(deps);

  for (bool stream : {false, true}) {
    http::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.body = json{{"prompt", prompt}, {"max_tokens", script.size()}, {"logprobs", 1}, {"temperature", 0},
                    {"stream", stream}}.dump();
    Captured resp;
    api.handle(req, resp);
    ASSERT_EQ(resp.status, 200) << resp.body;
    std::string text;
    std::vector<size_t> offsets;
    std::vector<std::string> tokens;
    auto take = [&](const json& choice) {
      text += choice["text"].get<std::string>();
      if (!choice["logprobs"].is_null())
        for (size_t i = 0; i < choice["logprobs"]["text_offset"].size(); ++i) {
          offsets.push_back(choice["logprobs"]["text_offset"][i].get<size_t>());
          tokens.push_back(choice["logprobs"]["tokens"][i].get<std::string>());
        }
    };
    if (!stream) {
      take(json::parse(resp.body)["choices"][0]);
    } else {
      for (size_t at = 0; (at = resp.body.find("data: {", at)) != std::string::npos; at += 6) {
        const json c = json::parse(resp.body.substr(at + 6, resp.body.find("\n\n", at) - at - 6));
        if (!c["choices"].empty()) take(c["choices"][0]);
      }
    }
    ASSERT_EQ(text, "h\xc3\xa9llo w\xc3\xb6rld") << "stream " << stream;
    ASSERT_EQ(offsets.size(), script.size());
    // Each token's text starts at its offset, counted in characters.
    const std::u32string chars = [&] {
      std::u32string s;
      for (size_t i = 0; i < text.size(); ++i)
        if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) s.push_back(char32_t(i));  // byte index of each char
      return s;
    }();
    size_t prev = 0;
    for (size_t i = 0; i < script.size(); ++i) {
      SCOPED_TRACE("stream " + std::to_string(stream) + " token " + std::to_string(i) + " '" + tokens[i] + "'");
      EXPECT_GE(offsets[i], prev);
      prev = offsets[i];
      ASSERT_LE(offsets[i], chars.size());
      if (tok.is_special(script[i])) {
        EXPECT_EQ(offsets[i], 5u);  // after the 5 characters of "héllo" (6 bytes)
        continue;
      }
      const size_t byte = offsets[i] < chars.size() ? size_t(chars[offsets[i]]) : text.size();
      EXPECT_EQ(text.compare(byte, tokens[i].size(), tokens[i]), 0) << "at byte " << byte;
    }
  }
}

}  // namespace
