#pragma once
// Helpers shared by the subcommands.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/model.h"

namespace fathom::cli {

// "5,17,42" → {5, 17, 42}; a clear error for anything else.
std::vector<int32_t> parse_ids(const std::string& s);
AttnMode parse_attn(const std::string& s);

// Reads JSONL records from stdin (blank lines skipped, CRLF accepted) and writes
// handle(line) + "\n" for each to stdout; an Error names the stdin line.
void map_jsonl_stdin(const std::function<std::string(const std::string&)>& handle);

// The options every model-running command takes.
struct ModelArgs {
  std::string model;
  int threads = 0;
  std::string attn = "absorbed";
  std::string quant;
  bool no_repack = false;
  bool check_weights = false;
  void add(CLI::App* sub, bool with_quant = true);
  LoadOpts load_opts() const;
};

}  // namespace fathom::cli
