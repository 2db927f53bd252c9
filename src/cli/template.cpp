// fathom template: JSONL chat requests -> JSONL {"text", "ids"} rendered with the model's chat
// template (as HF apply_chat_template) and tokenized with special tokens recognized, no BOS added.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom::cli {
namespace {

struct TemplateOptions {
  std::string model;
  bool text_only = false;
};

std::string process_line(const ChatTemplate& tmpl, const Tokenizer* tok, const std::string& line) {
  nlohmann::ordered_json req;
  try {
    req = nlohmann::ordered_json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    fail("not valid JSON ({})", e.what());
  }
  if (!req.is_object()) fail("expected a JSON object with \"messages\"");
  if (!req.contains("messages")) fail("missing \"messages\"");
  bool add_gen = false;
  if (req.contains("add_generation_prompt")) {
    if (!req["add_generation_prompt"].is_boolean()) fail("\"add_generation_prompt\" must be true or false");
    add_gen = req["add_generation_prompt"].get<bool>();
  }
  // Every other key (tools, date_string, ...) is a template global.
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();
  for (auto it = req.begin(); it != req.end(); ++it)
    if (it.key() != "messages" && it.key() != "add_generation_prompt") extra[it.key()] = it.value();
  nlohmann::ordered_json out;
  out["text"] = tmpl.render(req["messages"], add_gen, extra);
  if (tok) out["ids"] = tok->encode(out["text"].get_ref<const std::string&>());
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void run(const TemplateOptions& o) {
  const ChatTemplate tmpl = ChatTemplate::load(o.model);
  std::optional<Tokenizer> tok;
  if (!o.text_only) tok.emplace(Tokenizer::load(o.model));
  map_jsonl_stdin([&](const std::string& line) { return process_line(tmpl, tok ? &*tok : nullptr, line); });
}

}  // namespace

void add_template(CLI::App& app) {
  auto o = std::make_shared<TemplateOptions>();
  auto* sub = app.add_subcommand(
      "template",
      "Render chat requests with the model's chat template. stdin: JSONL {\"messages\": [...], "
      "\"add_generation_prompt\": bool, other keys are template globals}; stdout: JSONL {\"text\", \"ids\"}");
  // Only the tokenizer files are read, so --tokenizer (as run/chat/serve spell it) is the same option.
  sub->add_option("--model,--tokenizer", o->model, "Directory with tokenizer_config.json (and tokenizer.json), or a .gguf file")
      ->required()
      ->check(CLI::ExistingPath);
  sub->add_flag("--text-only", o->text_only, "Write only the text (no tokenizer needed)");
  sub->callback([o] { run(*o); });
}

}  // namespace fathom::cli
