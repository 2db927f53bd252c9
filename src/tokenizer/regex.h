#pragma once
// A compiled PCRE2 pattern (UTF + UCP, JIT when available) with the match-iteration rules
// of the Oniguruma engine HF tokenizers uses.
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace fathom {

struct Span {
  size_t begin, end;
  bool match;
};

// Per-call matching state (match data and, when deep backtracking needs it, a larger JIT
// stack). One per thread of work; the Regex itself is immutable and shareable.
class RegexScratch {
 public:
  RegexScratch();
  ~RegexScratch();
  RegexScratch(const RegexScratch&) = delete;
  RegexScratch& operator=(const RegexScratch&) = delete;

 private:
  friend class Regex;
  void* match_data_ = nullptr;
  void* match_ctx_ = nullptr;
  void* jit_stack_ = nullptr;
};

class Regex {
 public:
  // `pattern` uses Oniguruma/Rust syntax; \s and \S are mapped to the White_Space property
  // so that they match exactly what Oniguruma matches.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(Regex&& o) noexcept;
  Regex& operator=(Regex&&) = delete;
  Regex(const Regex&) = delete;

  // Appends to `out` the matches and the gaps between them, covering all of `text` (valid
  // UTF-8). An empty match right where the previous match ended is skipped, as Oniguruma's
  // iterator does. An empty `text` yields one empty gap.
  void find_spans(std::string_view text, RegexScratch& scratch, std::vector<Span>& out) const;

 private:
  bool search(std::string_view text, size_t from, RegexScratch& scratch, size_t& b, size_t& e) const;
  void* code_ = nullptr;
  bool jit_ = false;
};

// Escapes `literal` so that it matches itself.
std::string regex_escape(std::string_view literal);

}  // namespace fathom
