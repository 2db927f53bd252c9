#pragma once
// Tokens and syntax tree of the Jinja subset. The lexer applies all whitespace control
// (trim_blocks, lstrip_blocks, '-' and '+') so the tree only holds the text that is emitted.
#include <memory>
#include <string>
#include <vector>

#include "template/value.h"

namespace fathom::jinja {

struct Token {
  enum class Type { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, End };
  Type type;
  std::string text;  // Text: the data; Name/Op: spelling; String: the unescaped value
  int line = 1;
  int64_t ival = 0;
  double fval = 0;
};

// Whitespace options; transformers uses trim_blocks=True, lstrip_blocks=True.
struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
};

std::vector<Token> lex(const std::string& src, const LexOptions& opt);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal, Name, List, Tuple, Dict, Attr, Index, Slice, Call, Filter, Test,
    Neg, Pos, Not, Binary, Compare, And, Or, Cond,
  };
  Kind kind;
  int line;
  Value value;                   // Literal
  std::string name;              // Name, Attr, Filter, Test; Binary/Compare: operator
  std::vector<ExprPtr> args;     // operands / items / positional arguments (Dict: key, value, ...)
  std::vector<std::string> kwnames;  // keyword argument names for Call/Filter/Test
  std::vector<ExprPtr> kwargs;
  std::vector<std::string> ops;  // Compare: one operator per following operand
  bool negated = false;          // Test: "is not"
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, FilterBlock, With, Scope };
  Kind kind;
  int line;
  std::string text;                  // Text; Set/SetBlock/Macro: the target name
  std::string attr;                  // Set on a namespace attribute: ns.attr
  std::vector<std::string> targets;  // For / Set: names to bind (more than one: unpacking)
  ExprPtr expr;                      // Output, Set value, For iterable, With/Macro: unused
  ExprPtr cond;                      // For: the "if" filter
  std::vector<ExprPtr> conds;        // If: one per branch
  std::vector<Body> bodies;          // If: one per branch (+ else); For: body (+ else); others: [0]
  std::vector<ExprPtr> filters;      // SetBlock/FilterBlock: Filter exprs applied in order (arg 0 unset)
  std::vector<std::string> params;   // Macro parameters; With: names
  std::vector<ExprPtr> defaults;     // Macro defaults (nullptr = none); With: values
};

struct Program {
  Body body;
};

// Parses the whole template; syntax errors are fathom::Error naming the line.
std::unique_ptr<Program> parse(const std::string& src, const LexOptions& opt);

}  // namespace fathom::jinja
