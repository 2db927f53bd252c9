#pragma once
// Helpers shared by the subcommands.
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/model.h"

namespace fathom::cli {

// "5,17,42" → {5, 17, 42}; a clear error for anything else.
std::vector<int32_t> parse_ids(const std::string& s);
AttnMode parse_attn(const std::string& s);

// The options every model-running command takes.
struct ModelArgs {
  std::string model;
  int threads = 0;
  std::string attn = "absorbed";
  std::string quant;
  void add(CLI::App* sub, bool with_quant = true);
  LoadOpts load_opts() const;
};

}  // namespace fathom::cli
