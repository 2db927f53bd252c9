// The published DeepSeek-R1, Qwen2.5 and Llama-3.1 chat templates on small conversations. The
// expected strings were worked out by hand from the templates under jinja2 semantics (the
// environment transformers uses), not produced by this implementation.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "template/chat_template.h"

namespace {

using json = nlohmann::ordered_json;

std::string read(const std::string& name) {
  std::ifstream f(std::string(FATHOM_TEST_DATA) + "/templates/" + name, std::ios::binary);
  EXPECT_TRUE(f.good()) << name;
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const json kTools = json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "description": "Get weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
  "required": ["city"]}}}])");

const char* kToolJson =
    R"({"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": )"
    R"({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})";

TEST(ModelTemplates, DeepSeekR1DropsReasoningAndOpensThink) {
  auto t = fathom::ChatTemplate::from_string(read("deepseek-r1.jinja"), "<｜begin▁of▁sentence｜>",
                                             "<｜end▁of▁sentence｜>");
  json msgs = json::parse(R"([{"role": "system", "content": "S"}, {"role": "user", "content": "1+1?"},
    {"role": "assistant", "content": "<think>\nadd\n</think>\n\n2"}, {"role": "user", "content": "2+2?"}])");
  EXPECT_EQ(t.render(msgs, true, json::object()),
            "<｜begin▁of▁sentence｜>S<｜User｜>1+1?<｜Assistant｜>\n\n2<｜end▁of▁sentence｜><｜User｜>2+2?"
            "<｜Assistant｜><think>\n");
  EXPECT_EQ(t.render(json::parse(R"([{"role": "user", "content": "x"}])"), false, json::object()),
            "<｜begin▁of▁sentence｜><｜User｜>x");
  // The server's overload, which moves the messages' strings into the template.
  nlohmann::json moved = nlohmann::json::parse(msgs.dump());
  EXPECT_EQ(t.render(std::move(moved), true),
            "<｜begin▁of▁sentence｜>S<｜User｜>1+1?<｜Assistant｜>\n\n2<｜end▁of▁sentence｜><｜User｜>2+2?"
            "<｜Assistant｜><think>\n");
}

TEST(ModelTemplates, DeepSeekR1ToolCalls) {
  auto t = fathom::ChatTemplate::from_string(read("deepseek-r1.jinja"), "<s>", "</s>");
  json msgs = json::parse(R"([{"role": "user", "content": "w?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
      {"type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
    {"role": "tool", "content": "20C"}, {"role": "tool", "content": "noon"},
    {"role": "assistant", "content": "Warm at noon."}])");
  EXPECT_EQ(t.render(msgs, true, json::object()),
            "<s><｜User｜>w?<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
            "```json\n{\"city\": \"Paris\"}\n```<｜tool▁call▁end｜>\n<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_time\n"
            "```json\n{}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜><｜end▁of▁sentence｜>"
            "<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>20C<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>noon"
            "<｜tool▁output▁end｜><｜tool▁outputs▁end｜>Warm at noon.<｜end▁of▁sentence｜><｜Assistant｜><think>\n");
}

TEST(ModelTemplates, DeepSeekNoneUserContentIsAnError) {
  // '<｜User｜>' + None is a TypeError in Python, so transformers fails here too.
  auto t = fathom::ChatTemplate::from_string(read("deepseek-r1.jinja"), "<s>", "</s>");
  EXPECT_THROW(t.render(json::parse(R"([{"role": "user", "content": null}])"), true, json::object()), fathom::Error);
}

TEST(ModelTemplates, Qwen25DefaultSystem) {
  auto t = fathom::ChatTemplate::from_string(read("qwen2.5.jinja"), "", "<|im_end|>");
  EXPECT_EQ(t.render(json::parse(R"([{"role": "user", "content": "Hi"}])"), true, json::object()),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.render(json::parse(R"([{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello."}])"),
                     false, json::object()),
            "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello.<|im_end|>\n");
}

TEST(ModelTemplates, Qwen25WithTools) {
  auto t = fathom::ChatTemplate::from_string(read("qwen2.5.jinja"), "", "<|im_end|>");
  json msgs = json::parse(R"([{"role": "system", "content": "You are a bot."},
    {"role": "user", "content": "What's the weather in Paris?"},
    {"role": "assistant", "content": null, "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "{\"temp\": 20}"}, {"role": "tool", "content": "sunny"}])");
  std::string want = std::string("<|im_start|>system\nYou are a bot.\n\n# Tools\n\nYou may call one or more functions to ") +
                     "assist with the user query.\n\nYou are provided with function signatures within <tools></tools> " +
                     "XML tags:\n<tools>\n" + kToolJson +
                     "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                     "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                     "<args-json-object>}\n</tool_call><|im_end|>\n"
                     "<|im_start|>user\nWhat's the weather in Paris?<|im_end|>\n"
                     "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"
                     "\n</tool_call><|im_end|>\n"
                     "<|im_start|>user\n<tool_response>\n{\"temp\": 20}\n</tool_response>\n<tool_response>\nsunny\n"
                     "</tool_response><|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(t.render(msgs, true, json{{"tools", kTools}}), want);
}

TEST(ModelTemplates, Llama31Plain) {
  auto t = fathom::ChatTemplate::from_string(read("llama3.1.jinja"), "<|begin_of_text|>", "<|eot_id|>");
  json msgs = json::parse(R"([{"role": "system", "content": "Sys "}, {"role": "user", "content": "Hi"}])");
  EXPECT_EQ(t.render(msgs, false, json{{"date_string", "01 Jan 2025"}}),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
            "Today Date: 01 Jan 2025\n\nSys<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  // Without date_string the template's default date is used.
  EXPECT_NE(t.render(msgs, true, json::object()).find("Today Date: 26 Jul 2024\n\n"), std::string::npos);
}

TEST(ModelTemplates, Llama31WithTools) {
  auto t = fathom::ChatTemplate::from_string(read("llama3.1.jinja"), "<|begin_of_text|>", "<|eot_id|>");
  json msgs = json::parse(R"([{"role": "system", "content": "You are a bot."},
    {"role": "user", "content": "  Weather in Paris?  "},
    {"role": "assistant", "content": null, "tool_calls": [
      {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "20 degrees"}])");
  std::string tool4 =
      "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n"
      "        \"description\": \"Get weather\",\n        \"parameters\": {\n            \"type\": \"object\",\n"
      "            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\"\n"
      "                }\n            },\n            \"required\": [\n                \"city\"\n            ]\n"
      "        }\n    }\n}";
  std::string want =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\n"
      "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a bot.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a "
      "function call with its proper arguments that best answers the given prompt.\n\nRespond in the format "
      "{\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n" +
      tool4 +
      "\n\nWeather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", "
      "\"parameters\": {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_header_id|>\n\n\"20 degrees\""
      "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(t.render(msgs, true, json{{"tools", kTools}}), want);
}

TEST(ModelTemplates, Llama31RaisesOnTwoToolCalls) {
  auto t = fathom::ChatTemplate::from_string(read("llama3.1.jinja"), "<|begin_of_text|>", "<|eot_id|>");
  json msgs = json::parse(R"([{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
    {"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": {}}}]}])");
  try {
    t.render(msgs, true, json::object());
    FAIL() << "expected an error";
  } catch (const fathom::Error& e) {
    EXPECT_STREQ(e.what(), "This model only supports single tool-calls at once!");
  }
}

TEST(ModelTemplates, LoadPicksDefaultFromTemplateList) {
  std::string dir = testing::TempDir() + "/fathom_tpl_list";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokenizer_config.json")
      << R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D{{ bos_token }}{{ eos_token }}"}],
            "bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}})";
  auto t = fathom::ChatTemplate::load(dir);
  EXPECT_EQ(t.render(nlohmann::json::array(), false), "D<s></s>");
}

}  // namespace
