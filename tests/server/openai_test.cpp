// Request validation: every field the server cannot honour, or of the wrong type, is a 400
// that names it.
#include <gtest/gtest.h>

#include "server/openai.h"

using fathom::server::ApiError;
using fathom::server::json;
using fathom::server::parse_chat_request;
using fathom::server::parse_completion_request;

namespace {

json chat(json extra = json::object()) {
  json b = {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  for (auto& [k, v] : extra.items()) b[k] = v;
  return b;
}

// The `param` of the 400 the body gets, or "ok".
std::string param_of(const json& b, bool is_chat = true) {
  try {
    if (is_chat) parse_chat_request(b, {});
    else parse_completion_request(b);
    return "ok";
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    return e.param;
  }
}

}  // namespace

TEST(OpenAiRequest, ParsesTheSamplingFields) {
  json b = chat({{"temperature", 0.5}, {"top_p", 0.9}, {"top_k", 40}, {"min_p", 0.05}, {"seed", 7},
                 {"presence_penalty", 0.5}, {"frequency_penalty", -0.5}, {"max_tokens", 12},
                 {"stop", {"a", "b"}}, {"stream", true}, {"stream_options", {{"include_usage", true}}},
                 {"logprobs", true}, {"top_logprobs", 3}, {"unknown_field", 1}});
  auto r = parse_chat_request(b, {});
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_EQ(r.sampling.seed, 7u);
  EXPECT_EQ(*r.max_tokens, 12);
  EXPECT_EQ(r.stops, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.top_logprobs, 3);
}

TEST(OpenAiRequest, MaxCompletionTokensWins) {
  auto r = parse_chat_request(chat({{"max_tokens", 5}, {"max_completion_tokens", 9}}), {});
  EXPECT_EQ(*r.max_tokens, 9);
}

TEST(OpenAiRequest, RejectsWhatItCannotHonour) {
  EXPECT_EQ(param_of(chat({{"n", 2}})), "n");
  EXPECT_EQ(param_of(chat({{"n", 1}})), "ok");
  EXPECT_EQ(param_of(chat({{"tools", json::array({{{"type", "function"}}})}})), "tools");
  EXPECT_EQ(param_of(chat({{"tools", json::array()}})), "ok");
  EXPECT_EQ(param_of(chat({{"response_format", {{"type", "json_object"}}}})), "response_format");
  EXPECT_EQ(param_of(chat({{"response_format", {{"type", "text"}}}})), "ok");
  EXPECT_EQ(param_of(chat({{"logit_bias", {{"5", 10}}}})), "logit_bias");
  EXPECT_EQ(param_of(json{{"prompt", "x"}, {"echo", true}}, false), "echo");
  EXPECT_EQ(param_of(json{{"prompt", {"a", "b"}}}, false), "prompt");
}

TEST(OpenAiRequest, RejectsWrongTypes) {
  EXPECT_EQ(param_of(chat({{"temperature", "hot"}})), "temperature");
  EXPECT_EQ(param_of(chat({{"temperature", 3}})), "temperature");
  EXPECT_EQ(param_of(chat({{"max_tokens", 1.5}})), "max_tokens");
  EXPECT_EQ(param_of(chat({{"max_tokens", 0}})), "max_tokens");
  EXPECT_EQ(param_of(chat({{"stop", 5}})), "stop");
  EXPECT_EQ(param_of(chat({{"stream", "yes"}})), "stream");
  EXPECT_EQ(param_of(chat({{"messages", "hi"}})), "messages");
  EXPECT_EQ(param_of(chat({{"messages", json::array()}})), "messages");
  EXPECT_EQ(param_of(chat({{"messages", json::array({{{"role", 3}}})}})), "messages[0].role");
  EXPECT_EQ(param_of(chat({{"messages", json::array({{{"role", "user"}, {"content", 3}}})}})),
            "messages[0].content");
  EXPECT_EQ(param_of(chat({{"top_logprobs", 2}})), "top_logprobs");
  EXPECT_EQ(param_of(chat({{"model", 1}})), "model");
  EXPECT_EQ(param_of(json::array()), "");
  EXPECT_EQ(param_of(json{{"prompt", {1, -2}}}, false), "prompt");
  EXPECT_EQ(param_of(json{{"prompt", 5}}, false), "prompt");
}

TEST(OpenAiRequest, DropsReasoningContentOfInputMessages) {
  json b = chat({{"messages", json::array({{{"role", "user"}, {"content", "q"}},
                                           {{"role", "assistant"}, {"content", "a"}, {"reasoning_content", "r"}},
                                           {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "x"}}}}}})}});
  auto r = parse_chat_request(b, {});
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_FALSE(r.messages[1].contains("reasoning_content"));
  EXPECT_EQ(r.messages[2]["content"], "x");
}

TEST(OpenAiRequest, CompletionPrompts) {
  auto a = parse_completion_request(json{{"prompt", "hello"}});
  EXPECT_EQ(a.prompt_text, "hello");
  auto b = parse_completion_request(json{{"prompt", {1, 2, 3}}, {"logprobs", 2}});
  EXPECT_EQ(b.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(b.top_logprobs, 2);
  auto c = parse_completion_request(json{{"prompt", {{4, 5}}}});
  EXPECT_EQ(c.prompt_ids, (std::vector<int32_t>{4, 5}));
}
