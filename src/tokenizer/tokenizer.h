#pragma once
// HF tokenizer.json tokenizers (byte-level BPE as used by DeepSeek-V3/R1/V2, Qwen2 and
// Llama-3), exact to the ids HF `tokenizers` produces.
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fathom {

class Tokenizer {
 public:
  // Reads model_dir/tokenizer.json, and model_dir/tokenizer_config.json when present for
  // the BOS/EOS token names.
  static Tokenizer load(const std::string& model_dir);
  // Throws fathom::Error on a malformed or unsupported document.
  static Tokenizer from_json(std::string_view tokenizer_json);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // Text to ids; adds no BOS or other special tokens. Throws on invalid UTF-8.
  // Thread-safe.
  std::vector<int32_t> encode(std::string_view text) const;
  // Ids to text. Ids the tokenizer does not know are skipped, as HF does.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  std::optional<int32_t> token_id(std::string_view token) const;  // added token or vocab
  std::string_view token_text(int32_t id) const;                  // "" for an unknown id
  bool is_special(int32_t id) const;
  int32_t vocab_size() const;  // max id + 1
  std::optional<int32_t> bos_id() const;
  std::optional<int32_t> eos_id() const;

  struct Impl;
  const Impl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Streams decoded text: push ids one at a time and get back only complete characters.
// The concatenation of every push() and the final flush() equals Tokenizer::decode of
// all the ids. The tokenizer must outlive the decoder.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tok, bool skip_special = false);
  std::string push(int32_t id);
  // Emits what is still held (an incomplete trailing character becomes U+FFFD).
  std::string flush();

 private:
  const Tokenizer* tok_;
  bool skip_special_;
  bool first_ = true;
  std::string pending_;  // bytes of a character not yet complete
};

}  // namespace fathom
