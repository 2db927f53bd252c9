#pragma once
// The evaluator's internals, shared by eval.cpp (statements, expressions), ops.cpp (operators,
// attribute/item access, methods) and filters.cpp (filters, tests, globals).
#include <memory>
#include <string>
#include <unordered_map>

#include "template/jinja.h"

namespace fathom::jinja {

// Variables of one scope. Like jinja2: a for loop, macro call, with block or filter section gets
// its own frame; if blocks do not; set writes to the innermost frame.
struct Frame {
  std::unordered_map<std::string, Value> vars;
  std::shared_ptr<Frame> parent;
};

class Renderer {
 public:
  Renderer(const Options& opt, const Context& vars);

  std::string run(const Program& prog);

  Value eval(const Expr& e);
  Value call(const Value& fn, CallArgs& args);
  Value filter(const std::string& name, const Value& subject, CallArgs& args);
  bool test(const std::string& name, const Value& subject, CallArgs& args);

  void step();
  // Fails when a string being built would exceed the output cap.
  void check_size(size_t bytes) const;
  const Options& options() const { return opt_; }

 private:
  enum class Flow { Normal, Break, Continue };
  Flow exec(const Body& body, std::string& out);
  Flow exec_stmt(const Stmt& s, std::string& out);
  Flow exec_for(const Stmt& s, std::string& out);
  void assign(const std::vector<std::string>& targets, const Value& v);
  Value lookup(const std::string& name) const;
  Value eval_inner(const Expr& e);
  void eval_sum(const Expr& e, std::vector<Value>& parts);
  Value make_macro(const Stmt& s);
  std::string render_body_in_scope(const Body& body);

  const Options& opt_;
  std::shared_ptr<Frame> frame_;
  std::shared_ptr<Frame> root_;
  uint64_t steps_ = 0;
  int call_depth_ = 0;
};

// ops.cpp
Value get_attr(Renderer& r, const Value& obj, const std::string& name);
Value get_item(Renderer& r, const Value& obj, const Value& key);
Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
Value binary_op(Renderer& r, const std::string& op, const Value& a, const Value& b);
bool contains(const Value& container, const Value& item);
Value negate(const Value& v);

// filters.cpp
Value apply_filter(Renderer& r, const std::string& name, const Value& v, CallArgs& args);
bool apply_test(Renderer& r, const std::string& name, const Value& v, CallArgs& args);
void add_globals(Frame& root);

// Reads a builtin's arguments by position or keyword, Python style.
class ArgReader {
 public:
  ArgReader(CallArgs& a, std::string what) : a_(a), what_(std::move(what)) {}
  // Argument `pos` (0-based, excluding the filter subject) or keyword `name`.
  Value get(size_t pos, const char* name, Value def = Value());
  bool has(size_t pos, const char* name) const;
  // Fails on unknown keyword or surplus positional arguments.
  void done(size_t max_positional);

 private:
  CallArgs& a_;
  std::string what_;
  std::vector<bool> used_kw_;
};

}  // namespace fathom::jinja
