// Tokenizer for the Jinja subset, following jinja2's lexer rules for whitespace control:
// '-' strips all whitespace on that side; lstrip_blocks removes spaces/tabs between a line start
// and a block or comment tag (not '{{'), unless the tag opens with '+'; trim_blocks removes one
// newline after a block or comment tag, unless it closes with '+'.
#include <cctype>
#include <cstring>

#include "core/error.h"
#include "template/ast.h"

namespace fathom::jinja {

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

class Lexer {
 public:
  // Like jinja2, newlines in the source are normalized to "\n" first and one trailing newline
  // is dropped unless keep_trailing_newline.
  Lexer(const std::string& src, const LexOptions& opt) : opt_(opt) {
    s_.reserve(src.size());
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == '\r') {
        s_ += '\n';
        if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
      } else {
        s_ += src[i];
      }
    }
    if (!opt_.keep_trailing_newline && !s_.empty() && s_.back() == '\n') s_.pop_back();
  }

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < s_.size()) {
      size_t tag = find_tag(pos_);
      std::string text = s_.substr(pos_, tag == std::string::npos ? std::string::npos : tag - pos_);
      if (tag == std::string::npos) {
        emit_text(text, line_);
        break;
      }
      char kind = s_[tag + 1];  // '{', '%' or '#'
      char sign = tag + 2 < s_.size() && (s_[tag + 2] == '-' || s_[tag + 2] == '+') ? s_[tag + 2] : 0;
      if (sign == '-') {
        size_t e = text.size();
        while (e > 0 && is_ws(text[e - 1])) --e;
        text.resize(e);
      } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if (l_pos > 0 || line_starting) {
          bool only_blank = true;
          for (size_t i = l_pos; i < text.size(); ++i)
            if (text[i] != ' ' && text[i] != '\t') only_blank = false;
          if (only_blank) text.resize(l_pos);
        }
      }
      int text_line = line_;
      advance_to(tag);
      emit_text(text, text_line);
      pos_ = tag + 2 + (sign ? 1 : 0);
      if (kind == '#') {
        lex_comment();
      } else if (kind == '%' && is_raw_start()) {
        lex_raw();
      } else {
        lex_tag(kind == '{');
      }
      line_starting = pos_ > 0 && s_[pos_ - 1] == '\n';
    }
    out_.push_back({Token::Type::End, "", line_});
    return std::move(out_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string::npos; i = s_.find('{', i + 1)) {
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void advance_to(size_t p) {
    for (size_t i = pos_; i < p && i < s_.size(); ++i)
      if (s_[i] == '\n') ++line_;
    pos_ = p;
  }

  void emit_text(std::string text, int line) {
    if (text.empty()) return;
    out_.push_back({Token::Type::Text, std::move(text), line});
  }

  // After a closing delimiter at [end, end+len): apply '-' / trim_blocks.
  void after_close(size_t end, size_t len, char sign, bool is_block) {
    advance_to(end + len);
    if (sign == '-') {
      size_t p = pos_;
      while (p < s_.size() && is_ws(s_[p])) ++p;
      advance_to(p);
    } else if (sign != '+' && is_block && opt_.trim_blocks && pos_ < s_.size() && s_[pos_] == '\n') {
      advance_to(pos_ + 1);
    }
  }

  void lex_comment() {
    int start = line_;
    size_t e = s_.find("#}", pos_);
    if (e == std::string::npos) fail("chat template syntax error at line {}: unclosed comment", start);
    char sign = e > pos_ && (s_[e - 1] == '-' || s_[e - 1] == '+') ? s_[e - 1] : 0;
    advance_to(e);
    after_close(e, 2, sign, true);
  }

  bool is_raw_start() const {
    size_t p = pos_;
    while (p < s_.size() && is_ws(s_[p])) ++p;
    if (s_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < s_.size() && is_ws(s_[p])) ++p;
    if (p < s_.size() && s_[p] == '-') ++p;
    return s_.compare(p, 2, "%}") == 0;
  }

  void lex_raw() {
    int start = line_;
    size_t p = s_.find("%}", pos_);
    char sign = s_[p - 1] == '-' ? '-' : 0;
    after_close(p, 2, sign, true);
    // Find {% endraw %} (with optional signs).
    for (size_t t = find_tag(pos_); t != std::string::npos; t = find_tag(t + 1)) {
      if (s_[t + 1] != '%') continue;
      size_t q = t + 2;
      char open_sign = q < s_.size() && (s_[q] == '-' || s_[q] == '+') ? s_[q] : 0;
      if (open_sign) ++q;
      while (q < s_.size() && is_ws(s_[q])) ++q;
      if (s_.compare(q, 6, "endraw") != 0) continue;
      q += 6;
      while (q < s_.size() && is_ws(s_[q])) ++q;
      char close_sign = 0;
      if (q < s_.size() && (s_[q] == '-' || s_[q] == '+')) close_sign = s_[q++];
      if (s_.compare(q, 2, "%}") != 0) continue;
      std::string text = s_.substr(pos_, t - pos_);
      if (open_sign == '-') {
        while (!text.empty() && is_ws(text.back())) text.pop_back();
      }
      int text_line = line_;
      advance_to(t);
      emit_text(text, text_line);
      after_close(q, 2, close_sign, true);
      return;
    }
    fail("chat template syntax error at line {}: unclosed 'raw' block", start);
  }

  void lex_tag(bool is_var) {
    int start = line_;
    out_.push_back({is_var ? Token::Type::VarBegin : Token::Type::BlockBegin, "", line_});
    int depth = 0;
    while (true) {
      while (pos_ < s_.size() && is_ws(s_[pos_])) advance_to(pos_ + 1);
      if (pos_ >= s_.size())
        fail("chat template syntax error at line {}: unclosed '{}'", start, is_var ? "{{" : "{%");
      const char* close = is_var ? "}}" : "%}";
      if (depth == 0) {
        char sign = (s_[pos_] == '-' || s_[pos_] == '+') ? s_[pos_] : 0;
        size_t c = pos_ + (sign ? 1 : 0);
        if (s_.compare(c, 2, close) == 0 && !(is_var && sign == '+')) {
          out_.push_back({is_var ? Token::Type::VarEnd : Token::Type::BlockEnd, "", line_});
          after_close(c, 2, sign, !is_var);
          return;
        }
      }
      char c = s_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t e = pos_;
        while (e < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
        out_.push_back({Token::Type::Name, s_.substr(pos_, e - pos_), line_});
        pos_ = e;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        lex_string(c);
      } else {
        static const char* ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "/", "*", "%", "~", "[", "]", "(",
                                    ")", "{", "}", "<", ">", "=", ".", ":", "|", ",", ";"};
        const char* op = nullptr;
        for (const char* o : ops)
          if (s_.compare(pos_, std::strlen(o), o) == 0) {
            op = o;
            break;
          }
        if (!op) fail("chat template syntax error at line {}: unexpected character '{}'", line_, c);
        if (*op == '(' || *op == '[' || *op == '{') ++depth;
        if ((*op == ')' || *op == ']' || *op == '}') && depth > 0) --depth;
        out_.push_back({Token::Type::Op, op, line_});
        pos_ += std::strlen(op);
      }
    }
  }

  void lex_number() {
    size_t e = pos_;
    auto digits = [&] {
      while (e < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[e])) || s_[e] == '_')) ++e;
    };
    digits();
    bool is_float = false;
    // A '.' is part of the number only when a digit follows (so "x.0.1" style and "1.." stay ops).
    bool after_dot = pos_ > 0 && s_[pos_ - 1] == '.';
    if (!after_dot && e + 1 < s_.size() && s_[e] == '.' && std::isdigit(static_cast<unsigned char>(s_[e + 1]))) {
      is_float = true;
      ++e;
      digits();
    }
    if (!after_dot && e < s_.size() && (s_[e] == 'e' || s_[e] == 'E')) {
      size_t q = e + 1;
      if (q < s_.size() && (s_[q] == '+' || s_[q] == '-')) ++q;
      if (q < s_.size() && std::isdigit(static_cast<unsigned char>(s_[q]))) {
        is_float = true;
        e = q;
        digits();
      }
    }
    std::string txt;
    for (size_t i = pos_; i < e; ++i)
      if (s_[i] != '_') txt += s_[i];
    Token t{is_float ? Token::Type::Float : Token::Type::Int, txt, line_};
    if (is_float) {
      t.fval = std::strtod(txt.c_str(), nullptr);
    } else {
      errno = 0;
      char* end = nullptr;
      unsigned long long v = std::strtoull(txt.c_str(), &end, 10);
      if (errno || v > uint64_t(INT64_MAX)) fail("chat template line {}: integer literal {} is too large", line_, txt);
      t.ival = int64_t(v);
    }
    out_.push_back(std::move(t));
    pos_ = e;
  }

  static void put_utf8(std::string& out, uint32_t c) {
    if (c > 0x10FFFF) c = 0xFFFD;
    out += utf8_encode(std::u32string(1, char32_t(c)));
  }

  // Python string-literal escapes (jinja2 decodes literals with "unicode-escape").
  void lex_string(char q) {
    int start = line_;
    std::string v;
    size_t p = pos_ + 1;
    while (true) {
      if (p >= s_.size()) fail("chat template syntax error at line {}: unterminated string literal", start);
      char c = s_[p];
      if (c == q) break;
      if (c != '\\') {
        if (c == '\n') ++line_;
        v += c;
        ++p;
        continue;
      }
      if (p + 1 >= s_.size()) fail("chat template syntax error at line {}: unterminated string literal", start);
      char e = s_[p + 1];
      p += 2;
      auto hex = [&](int n) -> uint32_t {
        uint32_t r = 0;
        for (int i = 0; i < n; ++i, ++p) {
          if (p >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[p])))
            fail("chat template syntax error at line {}: bad \\x/\\u escape in string literal", line_);
          char h = s_[p];
          r = r * 16 + uint32_t(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
        }
        return r;
      };
      switch (e) {
        case 'n': v += '\n'; break;
        case 't': v += '\t'; break;
        case 'r': v += '\r'; break;
        case '\\': v += '\\'; break;
        case '\'': v += '\''; break;
        case '"': v += '"'; break;
        case 'a': v += '\a'; break;
        case 'b': v += '\b'; break;
        case 'f': v += '\f'; break;
        case 'v': v += '\v'; break;
        case '\n': ++line_; break;  // line continuation
        case 'x': put_utf8(v, hex(2)); break;
        case 'u': put_utf8(v, hex(4)); break;
        case 'U': put_utf8(v, hex(8)); break;
        default:
          if (e >= '0' && e <= '7') {
            uint32_t r = uint32_t(e - '0');
            for (int i = 0; i < 2 && p < s_.size() && s_[p] >= '0' && s_[p] <= '7'; ++i, ++p) r = r * 8 + uint32_t(s_[p] - '0');
            put_utf8(v, r);
          } else {
            v += '\\';
            v += e;
          }
      }
    }
    out_.push_back({Token::Type::String, std::move(v), start});
    pos_ = p + 1;
  }

  std::string s_;
  LexOptions opt_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> out_;
};

}  // namespace

std::vector<Token> lex(const std::string& src, const LexOptions& opt) { return Lexer(src, opt).run(); }

}  // namespace fathom::jinja
