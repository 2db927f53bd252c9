#pragma once
// Option checks, shared options and the help layout of the subcommands. CLI11's PositiveNumber and
// Range name the whole range of a double in their errors ("0.000000 to 1797693134862315708…");
// these name the bounds that apply.
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace fathom::cli {

// lo <= value <= hi; a value that is not a number is left to the option's own conversion.
inline CLI::Validator in_range(double lo, double hi) {
  return CLI::Validator(
      [lo, hi](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || (v >= lo && v <= hi)) return {};
        return fmt::format("{} is out of range: must be between {} and {}", s, lo, hi);
      },
      fmt::format("{}..{}", lo, hi));
}

inline CLI::Validator at_least(double lo) {
  return CLI::Validator(
      [lo](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || v >= lo) return {};
        return fmt::format("{} is out of range: must be {} or more", s, lo);
      },
      fmt::format(">={}", lo));
}

// --speculative mtp [--draft K]: speculative decoding with the model's MTP module drafting K
// tokens per step. draft_tokens() is K, or 0 when speculation is off.
struct SpeculativeArgs {
  std::string method = "none";
  int64_t draft = 1;
  void add(CLI::App* sub) {
    sub->add_option("--speculative", method,
                    "speculative decoding: mtp = the model's multi-token prediction module drafts tokens that one "
                    "forward verifies (same output as none)")
        ->check(CLI::IsMember({"none", "mtp"}));
    sub->add_option("--draft", draft, "tokens the MTP module drafts per step (with --speculative mtp)")
        ->check(at_least(1));
  }
  int64_t draft_tokens() const { return method == "mtp" ? draft : 0; }
};

// --tokenizer DIR: where tokenizer.json and tokenizer_config.json (with the chat template) are
// read from when the checkpoint directory lacks them.
inline void add_tokenizer_option(CLI::App* sub, std::string& dir) {
  sub->add_option("--tokenizer", dir,
                  "directory with tokenizer.json and tokenizer_config.json (chat template), or a .gguf "
                  "file; default: the --model directory or file")
      ->check(CLI::Validator(CLI::ExistingPath).description(""))  // a short label keeps the help's columns
      ->type_name("PATH");
}
inline const std::string& tokenizer_dir(const std::string& model_dir, const std::string& tokenizer) {
  return tokenizer.empty() ? model_dir : tokenizer;
}

// Help lines read "--ctx INT:>=1   context length (default: 8192)": the default goes with the
// description instead of CLI11's "INT:>=1=8192". A description that already names its default
// (e.g. "default: all cores") is left as it is.
class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() { column_width(34); }
  std::string make_option_opts(const CLI::Option* opt) const override {
    std::string s = CLI::Formatter::make_option_opts(opt);
    const std::string def = "=" + opt->get_default_str();
    if (def.size() > 1)
      if (auto k = s.rfind(def); k != std::string::npos) s.erase(k, def.size());
    return s;
  }
  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string d = opt->get_description();
    const std::string& def = opt->get_default_str();
    if (opt->get_type_size() != 0 && !def.empty() && d.find("default") == std::string::npos)
      d += (d.empty() ? "(default: " : " (default: ") + def + ")";
    return d;
  }
};

}  // namespace fathom::cli
