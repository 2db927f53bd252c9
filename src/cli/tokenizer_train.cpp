// fathom tokenizer-train: a byte-level BPE tokenizer with DeepSeek-R1's special tokens and chat
// template, trained on a text corpus and written as HF tokenizer.json + tokenizer_config.json.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/bpe_train.h"

namespace fathom::cli {
namespace {

struct TokenizerTrainOptions {
  std::string data;
  std::string out;
  int32_t vocab = 4096;
  int64_t min_frequency = 2;
  std::string chat_template;
  int64_t model_max_length = 4096;
};

// A .jsonl file holds one JSON string or {"text": ...} object per line (so documents may
// contain newlines); any other file is one document per line. Blank lines are skipped.
std::vector<std::string> read_corpus(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read {}", path);
  const bool jsonl = path.size() >= 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  std::vector<std::string> docs;
  std::string line;
  for (size_t n = 1; std::getline(f, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (!jsonl) {
      docs.push_back(std::move(line));
      continue;
    }
    nlohmann::json v;
    try {
      v = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: not valid JSON ({})", path, n, e.what());
    }
    if (v.is_object() && v.contains("text")) v = v["text"];
    if (!v.is_string()) fail("{}:{}: expected a JSON string or an object with a \"text\" string", path, n);
    docs.push_back(v.get<std::string>());
  }
  return docs;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("cannot read {}", path);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

void run(const TokenizerTrainOptions& o) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  BpeTrainOpts opts;
  opts.texts = read_corpus(o.data);
  opts.vocab_size = o.vocab;
  opts.min_frequency = o.min_frequency;
  opts.model_max_length = o.model_max_length;
  if (!o.chat_template.empty()) opts.chat_template = read_file(o.chat_template);
  size_t bytes = 0;
  for (const std::string& d : opts.texts) bytes += d.size();

  const TrainedBpe bpe = train_bpe(opts);
  bpe.save(o.out);
  const double secs = std::chrono::duration<double>(clock::now() - t0).count();
  std::printf("trained on %zu documents (%zu bytes): %zu merges, vocab size %d, %.2f s -> %s\n", opts.texts.size(),
              bytes, bpe.merges.size(), bpe.vocab_size(), secs, o.out.c_str());
  std::fflush(stdout);
  if (bpe.vocab_size() < o.vocab)
    std::fprintf(stderr, "fathom: note: no pair occurs %lld times or more past vocab size %d (asked for %d)\n",
                 static_cast<long long>(o.min_frequency), bpe.vocab_size(), o.vocab);
}

}  // namespace

void add_tokenizer_train(CLI::App& app) {
  auto o = std::make_shared<TokenizerTrainOptions>();
  auto* sub = app.add_subcommand(
      "tokenizer-train", "Train a byte-level BPE tokenizer (DeepSeek-R1 special tokens and chat template)");
  sub->add_option("--data", o->data, "Corpus: a text file, one document per line, or .jsonl of strings or {\"text\": ...}")
      ->required();
  sub->add_option("--vocab", o->vocab, "Total vocab size, special and chat tokens included")->check(CLI::Range(263, 1 << 24));
  sub->add_option("--out", o->out, "Directory to write tokenizer.json and tokenizer_config.json to")->required();
  sub->add_option("--min-frequency", o->min_frequency, "Merge only pairs seen at least this many times")
      ->check(CLI::PositiveNumber);
  sub->add_option("--chat-template", o->chat_template, "Jinja file for tokenizer_config.json (default: DeepSeek-R1's layout)");
  sub->add_option("--model-max-length", o->model_max_length, "model_max_length in tokenizer_config.json");
  sub->callback([o] { run(*o); });
}

}  // namespace fathom::cli
