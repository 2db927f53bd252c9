#include "cli/common.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <iostream>

#include "cli/default_model.h"
#include "cli/options.h"
#include "core/error.h"

namespace fathom::cli {

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  if (s.empty()) fail("--ids is empty");
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string_view tok(s.data() + i, j - i);
    while (!tok.empty() && tok.front() == ' ') tok.remove_prefix(1);
    while (!tok.empty() && tok.back() == ' ') tok.remove_suffix(1);
    int64_t v = 0;
    auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (tok.empty() || ec != std::errc() || p != tok.data() + tok.size() || v < 0 || v > INT32_MAX)
      fail("--ids: '{}' is not a token id (expected comma-separated non-negative integers)", tok);
    ids.push_back(int32_t(v));
    i = j + 1;
  }
  return ids;
}

void map_jsonl_stdin(const std::function<std::string(const std::string&)>& handle) {
  std::string line, out;
  size_t lineno = 0;
  while (std::getline(std::cin, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines carry no record
    try {
      out = handle(line);
    } catch (const Error& e) {
      std::fflush(stdout);
      fail("stdin line {}: {}", lineno, e.what());
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  std::fflush(stdout);
}

AttnMode parse_attn(const std::string& s) {
  if (s == "absorbed") return AttnMode::Absorbed;
  if (s == "naive") return AttnMode::Naive;
  fail("--attn must be naive or absorbed, not '{}'", s);
}

void ModelArgs::add(CLI::App* sub, bool with_quant) {
  sub->add_option("--model", model,
                  "checkpoint directory (config.json + safetensors) or .gguf file (default: nano-R1, models/nano-r1)");
  // Resolved once the command line is read, before the command runs.
  sub->parse_complete_callback([this] { model = resolve_model(model); });
  sub->add_option("--threads", threads, "worker threads (default: all cores)")->check(at_least(0));
  sub->add_option("--attn", attn, "MLA attention: absorbed (default) or naive");
  if (with_quant) sub->add_option("--quant", quant, "requantize weights at load: q8_0 | q4_0");
  sub->add_flag("--no-repack", no_repack,
                "keep Q8_0/Q4_0 weights row-major instead of packing them for AVX-512 VNNI");
  sub->add_flag("--check-weights", check_weights,
                "scan every weight value for NaN/Inf at load (default: a sample of each tensor)");
}

LoadOpts ModelArgs::load_opts() const {
  parse_attn(attn);
  LoadOpts o;
  o.threads = threads;
  o.quant = quant;
  o.repack = !no_repack;
  o.check_weights = check_weights;
  o.progress = isatty(2);
  return o;
}

}  // namespace fathom::cli
