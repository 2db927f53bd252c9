#pragma once
// A model's chat template (tokenizer_config.json "chat_template"), rendered as HF transformers'
// apply_chat_template(..., tokenize=False) does.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "template/jinja.h"

namespace fathom {

struct ChatTemplate {
  // Reads DIR/tokenizer_config.json: chat_template (a string, or a list of {name, template} from
  // which "default" is used; falls back to DIR/chat_template.jinja), bos_token and eos_token
  // (strings or AddedToken objects {"content": ...}).
  static ChatTemplate load(const std::string& model_dir);
  static ChatTemplate from_string(std::string tmpl, std::string bos, std::string eos);

  // messages: the OpenAI-style JSON array. extra: more template globals (tools, date_string, ...),
  // which override the defaults. The render arguments are those transformers passes:
  // messages, tools (None unless given), documents (None), add_generation_prompt, and the special
  // tokens. nlohmann::json sorts object keys; use the ordered_json overload where key order is
  // visible in the output (tojson of tool schemas).
  std::string render(const nlohmann::json& messages, bool add_generation_prompt,
                     const nlohmann::json& extra = nlohmann::json::object()) const;
  // Takes the messages' strings instead of copying them (a server's long prompts).
  std::string render(nlohmann::json&& messages, bool add_generation_prompt,
                     const nlohmann::json& extra = nlohmann::json::object()) const;
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra) const;

  const std::string& source() const { return source_; }
  const std::string& bos_token() const { return bos_; }
  const std::string& eos_token() const { return eos_; }

 private:
  std::string render_values(jinja::Value messages, bool add_generation_prompt, jinja::Context extra) const;

  std::shared_ptr<const jinja::Template> tmpl_;
  std::string source_;
  std::string bos_, eos_;
  bool has_bos_ = true, has_eos_ = true;
  jinja::Context special_;  // other special tokens from the config (unk_token, pad_token)
};

}  // namespace fathom
