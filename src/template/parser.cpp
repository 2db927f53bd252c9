// Recursive-descent parser with jinja2's operator precedence:
//   cond-expr < or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary - +
//   < primary with postfix (. [] ()) and filter/test chains (| f, is t).
#include <set>

#include "core/error.h"
#include "template/ast.h"

namespace fathom::jinja {

namespace {

// Nesting limit for expressions and blocks, so hostile templates cannot overflow the stack.
constexpr int kMaxNesting = 200;

using T = Token::Type;

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  std::unique_ptr<Program> run() {
    auto prog = std::make_unique<Program>();
    std::string found;
    prog->body = parse_until({}, &found, "", 0);
    return prog;
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t n = 1) const { return t_[std::min(i_ + n, t_.size() - 1)]; }
  bool is_op(const char* op) const { return cur().type == T::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == T::Name && cur().text == n; }

  [[noreturn]] void error(const std::string& msg) const {
    fail("chat template syntax error at line {}: {}", cur().line, msg);
  }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case T::Text: return "template text";
      case T::VarBegin: return "'{{'";
      case T::VarEnd: return "'}}'";
      case T::BlockBegin: return "'{%'";
      case T::BlockEnd: return "'%}'";
      case T::End: return "end of template";
      case T::String: return "string literal";
      default: return "'" + t.text + "'";
    }
  }
  void expect_op(const char* op) {
    if (!is_op(op)) error(fmt::format("expected '{}', got {}", op, describe(cur())));
    ++i_;
  }
  void expect(T type, const char* what) {
    if (cur().type != type) error(fmt::format("expected {}, got {}", what, describe(cur())));
    ++i_;
  }
  std::string expect_name() {
    if (cur().type != T::Name) error(fmt::format("expected a name, got {}", describe(cur())));
    return t_[i_++].text;
  }

  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& pp) : p(pp) {
      if (++p.depth_ > kMaxNesting) p.error(fmt::format("nesting deeper than {} levels", kMaxNesting));
    }
    ~DepthGuard() { --p.depth_; }
  };

  ExprPtr node(Expr::Kind k, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = k;
    e->line = line;
    return e;
  }
  StmtPtr stmt(Stmt::Kind k, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = line;
    return s;
  }

  // Parses statements until a block tag whose name is in `enders` (consumed, name stored in
  // *found; the caller parses the rest of that tag). `opener`/`open_line` name the enclosing
  // block for the unclosed-block error.
  Body parse_until(const std::set<std::string>& enders, std::string* found, const char* opener, int open_line) {
    DepthGuard g(*this);
    Body body;
    while (true) {
      const Token& t = cur();
      if (t.type == T::End) {
        if (!enders.empty())
          fail("chat template syntax error at line {}: unclosed '{}' block opened at line {} (expected '{}')", t.line,
               opener, open_line, *enders.rbegin());
        return body;
      }
      if (t.type == T::Text) {
        auto s = stmt(Stmt::Kind::Text, t.line);
        s->text = t.text;
        body.push_back(std::move(s));
        ++i_;
      } else if (t.type == T::VarBegin) {
        auto s = stmt(Stmt::Kind::Output, t.line);
        ++i_;
        s->expr = parse_tuple(true);
        expect(T::VarEnd, "'}}'");
        body.push_back(std::move(s));
      } else if (t.type == T::BlockBegin) {
        ++i_;
        if (cur().type != T::Name) error(fmt::format("expected a tag name, got {}", describe(cur())));
        if (enders.count(cur().text)) {
          *found = t_[i_++].text;
          return body;
        }
        body.push_back(parse_statement());
      } else {
        error(fmt::format("unexpected {}", describe(t)));
      }
    }
  }

  StmtPtr parse_statement() {
    int line = cur().line;
    std::string tag = t_[i_++].text;
    std::string found;
    if (tag == "if") {
      auto s = stmt(Stmt::Kind::If, line);
      s->conds.push_back(parse_expression());
      expect(T::BlockEnd, "'%}'");
      while (true) {
        s->bodies.push_back(parse_until({"elif", "else", "endif"}, &found, "if", line));
        if (found == "elif") {
          s->conds.push_back(parse_expression());
          expect(T::BlockEnd, "'%}'");
        } else if (found == "else") {
          expect(T::BlockEnd, "'%}'");
          s->bodies.push_back(parse_until({"endif"}, &found, "if", line));
          expect(T::BlockEnd, "'%}'");
          return s;
        } else {
          expect(T::BlockEnd, "'%}'");
          return s;
        }
      }
    }
    if (tag == "for") {
      auto s = stmt(Stmt::Kind::For, line);
      bool paren = is_op("(");
      if (paren) ++i_;
      s->targets.push_back(expect_name());
      while (is_op(",")) {
        ++i_;
        if (is_name("in") || is_op(")")) break;
        s->targets.push_back(expect_name());
      }
      if (paren) expect_op(")");
      if (!is_name("in")) error(fmt::format("expected 'in' in for loop, got {}", describe(cur())));
      ++i_;
      s->expr = parse_tuple(false);
      if (is_name("if")) {
        ++i_;
        s->cond = parse_expression();
      }
      if (is_name("recursive")) error("recursive for loops are not supported");
      expect(T::BlockEnd, "'%}'");
      ++loops_;
      s->bodies.push_back(parse_until({"else", "endfor"}, &found, "for", line));
      --loops_;
      if (found == "else") {
        expect(T::BlockEnd, "'%}'");
        s->bodies.push_back(parse_until({"endfor"}, &found, "for", line));
      }
      expect(T::BlockEnd, "'%}'");
      return s;
    }
    if (tag == "set") {
      std::string first = expect_name();
      std::string attr;
      std::vector<std::string> targets{first};
      if (is_op(".")) {
        ++i_;
        attr = expect_name();
      } else {
        while (is_op(",")) {
          ++i_;
          targets.push_back(expect_name());
        }
      }
      if (is_op("=")) {
        ++i_;
        auto s = stmt(Stmt::Kind::Set, line);
        s->targets = std::move(targets);
        s->text = first;
        s->attr = attr;
        s->expr = parse_tuple(true);
        expect(T::BlockEnd, "'%}'");
        return s;
      }
      if (targets.size() != 1 || !attr.empty()) error("a block 'set' assigns exactly one plain name");
      auto s = stmt(Stmt::Kind::SetBlock, line);
      s->text = first;
      while (is_op("|")) {
        ++i_;
        s->filters.push_back(parse_filter(nullptr));
      }
      expect(T::BlockEnd, "'%}'");
      s->bodies.push_back(parse_until({"endset"}, &found, "set", line));
      expect(T::BlockEnd, "'%}'");
      return s;
    }
    if (tag == "macro") {
      auto s = stmt(Stmt::Kind::Macro, line);
      s->text = expect_name();
      expect_op("(");
      while (!is_op(")")) {
        s->params.push_back(expect_name());
        if (is_op("=")) {
          ++i_;
          s->defaults.push_back(parse_expression());
        } else {
          s->defaults.push_back(nullptr);
        }
        if (!is_op(")")) expect_op(",");
      }
      ++i_;
      expect(T::BlockEnd, "'%}'");
      int saved = loops_;
      loops_ = 0;
      s->bodies.push_back(parse_until({"endmacro"}, &found, "macro", line));
      loops_ = saved;
      if (cur().type == T::Name) ++i_;  // {% endmacro name %}
      expect(T::BlockEnd, "'%}'");
      return s;
    }
    if (tag == "break" || tag == "continue") {
      if (loops_ == 0) fail("chat template syntax error at line {}: '{}' outside of a loop", line, tag);
      expect(T::BlockEnd, "'%}'");
      return stmt(tag == "break" ? Stmt::Kind::Break : Stmt::Kind::Continue, line);
    }
    if (tag == "filter") {
      auto s = stmt(Stmt::Kind::FilterBlock, line);
      s->filters.push_back(parse_filter(nullptr));
      while (is_op("|")) {
        ++i_;
        s->filters.push_back(parse_filter(nullptr));
      }
      expect(T::BlockEnd, "'%}'");
      s->bodies.push_back(parse_until({"endfilter"}, &found, "filter", line));
      expect(T::BlockEnd, "'%}'");
      return s;
    }
    if (tag == "with") {
      auto s = stmt(Stmt::Kind::With, line);
      while (cur().type != T::BlockEnd) {
        if (!s->params.empty()) expect_op(",");
        s->params.push_back(expect_name());
        expect_op("=");
        s->defaults.push_back(parse_expression());
      }
      ++i_;
      s->bodies.push_back(parse_until({"endwith"}, &found, "with", line));
      expect(T::BlockEnd, "'%}'");
      return s;
    }
    if (tag == "generation") {  // transformers' AssistantTracker tag: renders its body
      auto s = stmt(Stmt::Kind::Scope, line);
      expect(T::BlockEnd, "'%}'");
      s->bodies.push_back(parse_until({"endgeneration"}, &found, "generation", line));
      expect(T::BlockEnd, "'%}'");
      return s;
    }
    static const std::set<std::string> enders = {"endif", "endfor", "endset", "endmacro", "endfilter", "endwith",
                                                  "endgeneration", "elif", "else", "endraw"};
    if (enders.count(tag)) fail("chat template syntax error at line {}: unexpected '{}'", line, tag);
    fail("chat template syntax error at line {}: unsupported tag '{}'", line, tag);
  }

  // ---- expressions ----

  bool at_tuple_end() const {
    return cur().type == T::VarEnd || cur().type == T::BlockEnd || cur().type == T::End || is_op(")") ||
           is_name("if") || is_name("recursive");
  }

  // A comma-separated list becomes a tuple (stored as a list).
  ExprPtr parse_tuple(bool with_condexpr) {
    int line = cur().line;
    std::vector<ExprPtr> items;
    bool comma = false;
    while (true) {
      if (!items.empty()) {
        if (!is_op(",")) break;
        ++i_;
        comma = true;
        if (at_tuple_end()) break;
      }
      items.push_back(with_condexpr ? parse_expression() : parse_or());
    }
    if (!comma) return std::move(items[0]);
    auto e = node(Expr::Kind::Tuple, line);
    e->args = std::move(items);
    return e;
  }

  ExprPtr parse_expression() {
    DepthGuard g(*this);
    ExprPtr e = parse_or();
    while (is_name("if")) {
      int line = cur().line;
      ++i_;
      auto c = node(Expr::Kind::Cond, line);
      c->args.push_back(parse_or());  // condition
      c->args.push_back(std::move(e));
      if (is_name("else")) {
        ++i_;
        c->args.push_back(parse_expression());
      }
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(Expr::Kind k, const std::string& op, ExprPtr a, ExprPtr b, int line) {
    auto e = node(k, line);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      int line = t_[i_++].line;
      e = binary(Expr::Kind::Or, "or", std::move(e), parse_and(), line);
    }
    return e;
  }
  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      int line = t_[i_++].line;
      e = binary(Expr::Kind::And, "and", std::move(e), parse_not(), line);
    }
    return e;
  }
  ExprPtr parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this);
      auto e = node(Expr::Kind::Not, t_[i_++].line);
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr first = parse_math1();
    ExprPtr cmp;
    while (true) {
      std::string op;
      if (cur().type == T::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                  cur().text == "<=" || cur().text == ">" || cur().text == ">=")) {
        op = t_[i_++].text;
      } else if (is_name("in")) {
        ++i_;
        op = "in";
      } else if (is_name("not") && peek().type == T::Name && peek().text == "in") {
        i_ += 2;
        op = "not in";
      } else {
        break;
      }
      if (!cmp) {
        cmp = node(Expr::Kind::Compare, line);
        cmp->args.push_back(std::move(first));
      }
      cmp->ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(first);
  }
  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      int line = cur().line;
      std::string op = t_[i_++].text;
      e = binary(Expr::Kind::Binary, op, std::move(e), parse_concat(), line);
    }
    return e;
  }
  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      int line = t_[i_++].line;
      e = binary(Expr::Kind::Binary, "~", std::move(e), parse_math2(), line);
    }
    return e;
  }
  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      int line = cur().line;
      std::string op = t_[i_++].text;
      e = binary(Expr::Kind::Binary, op, std::move(e), parse_pow(), line);
    }
    return e;
  }
  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      int line = t_[i_++].line;
      e = binary(Expr::Kind::Binary, "**", std::move(e), parse_unary(true), line);
    }
    return e;
  }
  ExprPtr parse_unary(bool with_filter) {
    DepthGuard g(*this);
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      auto u = node(is_op("-") ? Expr::Kind::Neg : Expr::Kind::Pos, cur().line);
      ++i_;
      u->args.push_back(parse_unary(false));
      e = std::move(u);
    } else {
      e = parse_postfix(parse_primary());
    }
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = cur();
    int line = t.line;
    if (t.type == T::Name) {
      ++i_;
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        auto e = node(Expr::Kind::Literal, line);
        e->value = Value::boolean(t.text[0] == 't' || t.text[0] == 'T');
        return e;
      }
      if (t.text == "none" || t.text == "None") {
        auto e = node(Expr::Kind::Literal, line);
        e->value = Value::none();
        return e;
      }
      auto e = node(Expr::Kind::Name, line);
      e->name = t.text;
      return e;
    }
    if (t.type == T::String) {
      std::string s;
      while (cur().type == T::String) s += t_[i_++].text;  // adjacent literals concatenate
      auto e = node(Expr::Kind::Literal, line);
      e->value = Value::string(std::move(s));
      return e;
    }
    if (t.type == T::Int || t.type == T::Float) {
      ++i_;
      auto e = node(Expr::Kind::Literal, line);
      e->value = t.type == T::Int ? Value::integer(t.ival) : Value::number(t.fval);
      return e;
    }
    if (is_op("(")) {
      ++i_;
      if (is_op(")")) {
        ++i_;
        return node(Expr::Kind::Tuple, line);
      }
      ExprPtr e = parse_tuple(true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      ++i_;
      auto e = node(Expr::Kind::List, line);
      while (!is_op("]")) {
        if (!e->args.empty()) {
          expect_op(",");
          if (is_op("]")) break;
        }
        e->args.push_back(parse_expression());
      }
      ++i_;
      return e;
    }
    if (is_op("{")) {
      ++i_;
      auto e = node(Expr::Kind::Dict, line);
      while (!is_op("}")) {
        if (!e->args.empty()) {
          expect_op(",");
          if (is_op("}")) break;
        }
        e->args.push_back(parse_expression());
        expect_op(":");
        e->args.push_back(parse_expression());
      }
      ++i_;
      return e;
    }
    error(fmt::format("unexpected {} in expression", describe(t)));
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      int line = cur().line;
      if (is_op(".")) {
        ++i_;
        if (cur().type == T::Int) {
          auto idx = node(Expr::Kind::Index, line);
          auto lit = node(Expr::Kind::Literal, line);
          lit->value = Value::integer(t_[i_++].ival);
          idx->args.push_back(std::move(e));
          idx->args.push_back(std::move(lit));
          e = std::move(idx);
          continue;
        }
        auto a = node(Expr::Kind::Attr, line);
        a->name = expect_name();
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (is_op("[")) {
        ++i_;
        e = parse_subscript(std::move(e), line);
        expect_op("]");
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr obj, int line) {
    ExprPtr parts[3];
    if (!is_op(":")) {
      ExprPtr first = parse_expression();
      if (!is_op(":")) {
        auto idx = node(Expr::Kind::Index, line);
        idx->args.push_back(std::move(obj));
        idx->args.push_back(std::move(first));
        return idx;
      }
      parts[0] = std::move(first);
    }
    ++i_;  // ':'
    if (!is_op("]") && !is_op(":")) parts[1] = parse_expression();
    if (is_op(":")) {
      ++i_;
      if (!is_op("]")) parts[2] = parse_expression();
    }
    auto s = node(Expr::Kind::Slice, line);
    s->args.push_back(std::move(obj));
    for (auto& p : parts) s->args.push_back(std::move(p));  // may be null
    return s;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool first = true;
    while (!is_op(")")) {
      if (!first) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**")) error("'*args' / '**kwargs' in calls are not supported");
      if (cur().type == T::Name && peek().type == T::Op && peek().text == "=") {
        e.kwnames.push_back(t_[i_].text);
        i_ += 2;
        e.kwargs.push_back(parse_expression());
      } else {
        if (!e.kwargs.empty()) error("positional argument follows keyword argument");
        e.args.push_back(parse_expression());
      }
      first = false;
    }
    ++i_;
  }

  ExprPtr parse_call(ExprPtr callee) {
    auto c = node(Expr::Kind::Call, cur().line);
    c->args.push_back(std::move(callee));
    parse_call_args(*c);
    return c;
  }

  // `subject` is null for filter sections ({% filter %}, {% set x | f %}); arg 0 is filled later.
  ExprPtr parse_filter(ExprPtr subject) {
    auto f = node(Expr::Kind::Filter, cur().line);
    f->name = expect_name();
    while (is_op(".")) {
      ++i_;
      f->name += "." + expect_name();
    }
    f->args.push_back(std::move(subject));
    if (is_op("(")) parse_call_args(*f);
    return f;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        ++i_;
        e = parse_filter(std::move(e));
      } else if (is_name("is")) {
        int line = t_[i_++].line;
        auto t = node(Expr::Kind::Test, line);
        if (is_name("not")) {
          ++i_;
          t->negated = true;
        }
        t->name = expect_name();
        while (is_op(".")) {
          ++i_;
          t->name += "." + expect_name();
        }
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((cur().type == T::Name || cur().type == T::String || cur().type == T::Int ||
                    cur().type == T::Float || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) error("you cannot chain multiple tests with 'is'");
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e));
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loops_ = 0;
};

}  // namespace

std::unique_ptr<Program> parse(const std::string& src, const LexOptions& opt) {
  return Parser(lex(src, opt)).run();
}

}  // namespace fathom::jinja
