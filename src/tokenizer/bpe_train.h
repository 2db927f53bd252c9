#pragma once
// Trains a byte-level BPE tokenizer with DeepSeek-V3's pre-tokenizer and DeepSeek-R1's special
// tokens, and writes it as HF tokenizer.json + tokenizer_config.json (the layout of the
// DeepSeek-V3/R1 files, so fathom's Tokenizer and HF `tokenizers` both load it).
//
// Id layout of the result (vocab_size ids in all):
//   0, 1, 2           <｜begin▁of▁sentence｜>, <｜end▁of▁sentence｜>, <｜▁pad▁｜> (special; also in
//                     the model vocab, as in DeepSeek-V3)
//   3 .. 258          the 256 byte symbols, ordered by their byte-level character (as DeepSeek-V3)
//   259 ..            one token per merge that made a new string, in merge order
//   last 4            <think>, </think>, <｜User｜>, <｜Assistant｜> (added, not special, as in R1)
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace fathom {

struct BpeTrainOpts {
  std::vector<std::string> texts;  // the corpus, one document each (valid UTF-8)
  // Total ids, special and added tokens included. Training stops short of it when no pair
  // reaches min_frequency (the result's vocab_size() then says how many there are).
  int32_t vocab_size = 4096;
  int64_t min_frequency = 2;  // a pair seen fewer times (weighted by word count) is not merged
  std::string chat_template;  // tokenizer_config.json's; empty: the built-in R1 layout
  int64_t model_max_length = 4096;
};

struct TrainedBpe {
  // Model vocab by id, as raw bytes (ids 0..2 hold the special tokens' text).
  std::vector<std::string> tokens;
  // Merges in rank order: the ids of the left and right parts.
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::string chat_template;
  int64_t model_max_length = 0;

  int32_t vocab_size() const;  // model vocab + added tokens
  std::string tokenizer_json() const;
  std::string tokenizer_config_json() const;
  // Writes dir/tokenizer.json and dir/tokenizer_config.json, creating dir.
  void save(const std::string& dir) const;
};

// Counts the corpus's pre-tokens and runs the BPE merge loop: each step merges the adjacent
// pair with the highest count; ties go to the pair whose (left, right) raw bytes compare
// smallest. Deterministic: the same options give byte-identical files.
TrainedBpe train_bpe(const BpeTrainOpts& opts);

// The chat template written when BpeTrainOpts::chat_template is empty. It renders
// system, user and assistant messages exactly as DeepSeek-R1's template does (the system
// prompt after BOS, reasoning before </think> dropped from past assistant turns, and
// "<｜Assistant｜><think>\n" as the generation prompt); it has no tool-call layout.
const std::string& r1_chat_template();

// The special (ids 0..2) and added tokens, in id order within each group.
const std::vector<std::string>& bpe_special_tokens();
const std::vector<std::string>& bpe_added_tokens();

}  // namespace fathom
