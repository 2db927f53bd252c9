// fathom tokenize: JSONL text -> JSONL id arrays (or, with --decode, the reverse).
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace fathom::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  bool decode = false;
  bool skip_special = false;
};

std::string process_line(const Tokenizer& tok, const TokenizeOptions& o, const std::string& line) {
  nlohmann::json v;
  try {
    v = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    fail("not valid JSON ({})", e.what());
  }
  if (!o.decode) {
    if (!v.is_string()) fail("expected a JSON string");
    return nlohmann::json(tok.encode(v.get_ref<const std::string&>())).dump();
  }
  if (!v.is_array()) fail("expected a JSON array of token ids");
  std::vector<int32_t> ids;
  ids.reserve(v.size());
  for (const auto& x : v) {
    if (!x.is_number_integer()) fail("expected a JSON array of token ids");
    const auto id = x.get<int64_t>();
    if (id < 0 || id >= tok.vocab_size()) fail("token id {} is out of range (vocab size {})", id, tok.vocab_size());
    ids.push_back(static_cast<int32_t>(id));
  }
  return nlohmann::json(tok.decode(ids, o.skip_special)).dump();
}

void run(const TokenizeOptions& o) {
  const Tokenizer tok = Tokenizer::load(o.model);
  map_jsonl_stdin([&](const std::string& line) { return process_line(tok, o, line); });
}

}  // namespace

void add_tokenize(CLI::App& app) {
  auto opts = std::make_shared<TokenizeOptions>();
  auto* sub = app.add_subcommand(
      "tokenize", "Tokenize JSONL from stdin: one JSON string per line in, one JSON array of ids per line out");
  // Only the tokenizer is read, so --tokenizer (as run/chat/serve spell it) is the same option.
  sub->add_option("--model,--tokenizer", opts->model, "Directory holding tokenizer.json (and tokenizer_config.json), or a .gguf file")
      ->required();
  sub->add_flag("--decode", opts->decode, "Decode instead: JSON arrays of ids in, JSON strings out");
  sub->add_flag("--skip-special", opts->skip_special, "With --decode, drop special tokens");
  sub->callback([opts] { run(*opts); });
}

}  // namespace fathom::cli
