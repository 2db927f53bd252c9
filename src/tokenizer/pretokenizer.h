#pragma once
// Normalizers and pre-tokenizers from tokenizer.json, compiled once at load.
#include <deque>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/unicode.h"

namespace fathom {

// A pre-token. `byte_level` means the ByteLevel pre-tokenizer has (logically) applied its
// byte-to-character mapping: `text` holds the raw bytes and the model maps them itself,
// which avoids building the mapped string for every piece.
struct Piece {
  std::string_view text;
  bool byte_level = false;
};

// Scratch space for one encode call.
struct Workspace {
  std::deque<std::string> arena;  // owns text created by normalizers and prefix spaces
  RegexScratch regex;
  std::vector<Span> spans, merged;
  std::vector<Piece> a, b;
  std::string_view keep(std::string s) { return arena.emplace_back(std::move(s)); }
};

class Normalizer {
 public:
  // Accepts null, Sequence, NFC, NFD, NFKC, NFKD.
  explicit Normalizer(const nlohmann::json& spec);
  bool identity() const { return forms_.empty(); }
  std::string apply(std::string_view s) const;

 private:
  std::vector<utf8::NormForm> forms_;
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

class PreTokenizer {
 public:
  // Accepts null, Sequence, Split, ByteLevel, Digits.
  explicit PreTokenizer(const nlohmann::json& spec);
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Splits `text` into pieces, appended to `out`; views point into `text` or `ws.arena`.
  void run(std::string_view text, Workspace& ws, std::vector<Piece>& out) const;

  // The byte -> character table of the ByteLevel pre-tokenizer and decoder.
  static const char32_t* byte_to_char();

 private:
  struct Stage;
  void add_stages(const nlohmann::json& spec);
  std::vector<Stage> stages_;
};

// Applies a split behavior to matches/gaps covering a piece (after any inversion) and
// appends the resulting ranges to `out`; `match` marks ranges to drop (Removed only).
void apply_behavior(const std::vector<Span>& spans, SplitBehavior behavior, std::vector<Span>& out);

}  // namespace fathom
