#include "template/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "io/gguf_config.h"
#include "template/errors.h"

namespace fathom {

namespace {

// A special token is a string or an AddedToken object {"content": ...}; absent/null -> nullopt.
std::optional<std::string> token_text(const nlohmann::json& cfg, const char* key) {
  auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    return (*it)["content"].get<std::string>();
  fail("tokenizer_config.json: '{}' is neither a string nor an object with \"content\"", key);
}

template <typename Json>
jinja::Context to_context(const Json& extra) {
  jinja::Context ctx;
  if (extra.is_null()) return ctx;
  if (!extra.is_object()) fail("chat template globals must be a JSON object");
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    try {
      ctx[it.key()] = jinja::Value::from_json(it.value());
    } catch (const jinja::UnlocatedError& e) {
      fail("chat template global '{}': {}", it.key(), e.what());
    }
  }
  return ctx;
}

template <typename Json>
jinja::Value messages_value(Json&& messages) {
  if (!messages.is_array()) fail("chat messages must be a JSON array");
  try {
    return jinja::Value::from_json(std::forward<Json>(messages));
  } catch (const jinja::UnlocatedError& e) {
    fail("chat messages: {}", e.what());
  }
}

}  // namespace

ChatTemplate ChatTemplate::load(const std::string& model_dir) {
  namespace fs = std::filesystem;
  fs::path cfg_path = fs::path(model_dir) / "tokenizer_config.json";
  nlohmann::json cfg;
  if (is_gguf_path(model_dir)) {
    // A GGUF file carries the template and special tokens in its metadata.
    cfg_path = model_dir;
    cfg = gguf_tokenizer_config(GgufModel::open(model_dir).metadata());
  } else {
    try {
      cfg = nlohmann::json::parse(read_file(cfg_path));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", cfg_path.string(), e.what());
    }
  }
  std::string source;
  auto it = cfg.find("chat_template");
  if (it != cfg.end() && it->is_string()) {
    source = it->get<std::string>();
  } else if (it != cfg.end() && it->is_array()) {
    bool found = false;
    for (const auto& entry : *it) {
      if (entry.is_object() && entry.value("name", "") == "default" && entry.contains("template") &&
          entry["template"].is_string()) {
        source = entry["template"].get<std::string>();
        found = true;
      }
    }
    if (!found) fail("{}: chat_template list has no entry named \"default\"", cfg_path.string());
  } else if (fs::exists(fs::path(model_dir) / "chat_template.jinja")) {
    source = read_file((fs::path(model_dir) / "chat_template.jinja").string());
  } else {
    fail("{}: no chat_template", cfg_path.string());
  }
  auto bos = token_text(cfg, "bos_token");
  auto eos = token_text(cfg, "eos_token");
  ChatTemplate t = from_string(std::move(source), bos.value_or(""), eos.value_or(""));
  t.has_bos_ = bos.has_value();
  t.has_eos_ = eos.has_value();
  for (const char* key : {"unk_token", "pad_token"})
    if (auto v = token_text(cfg, key)) t.special_[key] = jinja::Value::string(*v);
  return t;
}

ChatTemplate ChatTemplate::from_string(std::string tmpl, std::string bos, std::string eos) {
  ChatTemplate t;
  t.tmpl_ = std::make_shared<const jinja::Template>(jinja::Template::parse(tmpl));
  t.source_ = std::move(tmpl);
  t.bos_ = std::move(bos);
  t.eos_ = std::move(eos);
  return t;
}

std::string ChatTemplate::render_values(jinja::Value messages, bool add_generation_prompt,
                                        jinja::Context extra) const {
  jinja::Context vars = special_;
  if (has_bos_) vars["bos_token"] = jinja::Value::string(bos_);
  if (has_eos_) vars["eos_token"] = jinja::Value::string(eos_);
  vars["messages"] = std::move(messages);
  vars["tools"] = jinja::Value::none();
  vars["documents"] = jinja::Value::none();
  vars["add_generation_prompt"] = jinja::Value::boolean(add_generation_prompt);
  for (auto& [k, v] : extra) vars[k] = std::move(v);
  return tmpl_->render(vars);
}

std::string ChatTemplate::render(const nlohmann::json& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
  return render_values(messages_value(messages), add_generation_prompt, to_context(extra));
}

std::string ChatTemplate::render(nlohmann::json&& messages, bool add_generation_prompt,
                                 const nlohmann::json& extra) const {
  return render_values(messages_value(std::move(messages)), add_generation_prompt, to_context(extra));
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
  return render_values(messages_value(messages), add_generation_prompt, to_context(extra));
}

}  // namespace fathom
