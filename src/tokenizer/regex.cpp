#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/regex.h"

#include <pcre2.h>

#include "core/error.h"

namespace fathom {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// PCRE2's \s also matches U+180E, which Oniguruma's Unicode \s does not; the White_Space
// property is what Oniguruma uses, and it works both inside and outside classes.
std::string translate(const std::string& p) {
  std::string out;
  out.reserve(p.size() + 16);
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == '\\' && i + 1 < p.size()) {
      const char c = p[i + 1];
      if (c == 's') out += "\\p{White_Space}";
      else if (c == 'S') out += "\\P{White_Space}";
      else out.append(p, i, 2);
      ++i;
    } else {
      out += p[i];
    }
  }
  return out;
}

pcre2_code* as_code(void* p) { return static_cast<pcre2_code*>(p); }

}  // namespace

RegexScratch::RegexScratch() {
  match_data_ = pcre2_match_data_create(1, nullptr);
  if (!match_data_) throw std::bad_alloc();
}

RegexScratch::~RegexScratch() {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  if (match_ctx_) pcre2_match_context_free(static_cast<pcre2_match_context*>(match_ctx_));
  if (jit_stack_) pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(jit_stack_));
}

Regex::Regex(const std::string& pattern) {
  const std::string p = translate(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, nullptr);
  if (!code) fail("invalid regex '{}' at offset {}: {}", pattern, off, pcre2_message(err));
  code_ = code;
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  if (code_) pcre2_code_free(as_code(code_));
}

Regex::Regex(Regex&& o) noexcept : code_(o.code_), jit_(o.jit_) { o.code_ = nullptr; }

bool Regex::search(std::string_view text, size_t from, RegexScratch& s, size_t& b, size_t& e) const {
  auto* md = static_cast<pcre2_match_data*>(s.match_data_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  // Input was validated once up front; skip PCRE2's per-call UTF check.
  int rc = pcre2_match(as_code(code_), subject, text.size(), from, PCRE2_NO_UTF_CHECK, md,
                       static_cast<pcre2_match_context*>(s.match_ctx_));
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !s.jit_stack_) {
    s.jit_stack_ = pcre2_jit_stack_create(64 * 1024, 64 * 1024 * 1024, nullptr);
    s.match_ctx_ = pcre2_match_context_create(nullptr);
    if (!s.jit_stack_ || !s.match_ctx_) throw std::bad_alloc();
    pcre2_jit_stack_assign(static_cast<pcre2_match_context*>(s.match_ctx_), nullptr, s.jit_stack_);
    rc = pcre2_match(as_code(code_), subject, text.size(), from, PCRE2_NO_UTF_CHECK, md,
                     static_cast<pcre2_match_context*>(s.match_ctx_));
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("regex match failed: {}", pcre2_message(rc));
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  b = ov[0];
  e = ov[1];
  return true;
}

void Regex::find_spans(std::string_view text, RegexScratch& scratch, std::vector<Span>& out) const {
  if (text.empty()) {
    out.push_back({0, 0, false});
    return;
  }
  size_t prev = 0, pos = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (pos <= text.size()) {
    size_t b, e;
    if (!search(text, pos, scratch, b, e)) break;
    if (b == e && have_last && last_end == e) {
      // Step one character past an empty match at the previous match's end.
      if (pos >= text.size()) break;
      size_t i = pos;
      const auto c = static_cast<uint8_t>(text[i]);
      pos += c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
      continue;
    }
    if (prev != b) out.push_back({prev, b, false});
    out.push_back({b, e, true});
    prev = e;
    pos = e;
    have_last = true;
    last_end = e;
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
}

std::string regex_escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-#&~ \t\n").find(c) != std::string_view::npos) {
      if (c == '\t') { out += "\\t"; continue; }
      if (c == '\n') { out += "\\n"; continue; }
      out += '\\';
    }
    out += c;
  }
  return out;
}

}  // namespace fathom
