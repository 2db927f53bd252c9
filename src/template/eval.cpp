// Statement execution and expression evaluation.
#include "template/eval.h"

#include <algorithm>

#include "core/error.h"
#include "template/errors.h"

namespace fathom::jinja {

Renderer::Renderer(const Options& opt, const Context& vars) : opt_(opt) {
  root_ = std::make_shared<Frame>();
  add_globals(*root_);
  for (const auto& [k, v] : vars) root_->vars[k] = v;
  frame_ = root_;
}

std::string Renderer::run(const Program& prog) {
  std::string out;
  exec(prog.body, out);
  return out;
}

void Renderer::step() {
  if (++steps_ > opt_.max_steps) rt_fail("rendering exceeded the limit of {} steps", opt_.max_steps);
}

void Renderer::check_size(size_t bytes) const {
  if (bytes > opt_.max_output_bytes) rt_fail("rendered text exceeds the limit of {} bytes", opt_.max_output_bytes);
}

Value Renderer::lookup(const std::string& name) const {
  for (const Frame* f = frame_.get(); f; f = f->parent.get()) {
    auto it = f->vars.find(name);
    if (it != f->vars.end()) return it->second;
  }
  return Value::undefined(fmt::format("'{}' is undefined", name));
}

Value Renderer::call(const Value& fn, CallArgs& args) {
  if (!fn.is_callable()) {
    if (fn.is_undefined())
      rt_fail("{}", fn.undefined_hint().empty() ? std::string("called an undefined value") : fn.undefined_hint());
    rt_fail("'{}' object is not callable", fn.type_name());
  }
  return fn.func().fn(*this, args);
}

Value Renderer::filter(const std::string& name, const Value& subject, CallArgs& args) {
  return apply_filter(*this, name, subject, args);
}

bool Renderer::test(const std::string& name, const Value& subject, CallArgs& args) {
  return apply_test(*this, name, subject, args);
}

Renderer::Flow Renderer::exec(const Body& body, std::string& out) {
  for (const auto& s : body) {
    Flow f = exec_stmt(*s, out);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

namespace {
struct FrameGuard {
  std::shared_ptr<Frame>& slot;
  std::shared_ptr<Frame> saved;
  FrameGuard(std::shared_ptr<Frame>& s, std::shared_ptr<Frame> parent) : slot(s), saved(s) {
    auto f = std::make_shared<Frame>();
    f->parent = std::move(parent);
    slot = std::move(f);
  }
  ~FrameGuard() { slot = std::move(saved); }
};
}  // namespace

std::string Renderer::render_body_in_scope(const Body& body) {
  FrameGuard g(frame_, frame_);
  std::string out;
  exec(body, out);
  return out;
}

void Renderer::assign(const std::vector<std::string>& targets, const Value& v) {
  if (targets.size() == 1) {
    frame_->vars[targets[0]] = v;
    return;
  }
  ValueList items = iterate(v);
  if (items.size() != targets.size())
    rt_fail("cannot unpack {} values into {} names", items.size(), targets.size());
  for (size_t i = 0; i < targets.size(); ++i) frame_->vars[targets[i]] = items[i];
}

Renderer::Flow Renderer::exec_stmt(const Stmt& s, std::string& out) {
  try {
    step();
    switch (s.kind) {
      case Stmt::Kind::Text:
        out += s.text;
        check_size(out.size());
        return Flow::Normal;
      case Stmt::Kind::Output: {
        std::vector<Value> parts;
        eval_sum(*s.expr, parts);
        for (const Value& v : parts) {
          out += v.is_string() ? v.str() : to_str(v);
          check_size(out.size());
        }
        return Flow::Normal;
      }
      case Stmt::Kind::If:
        for (size_t i = 0; i < s.conds.size(); ++i) {
          if (eval(*s.conds[i]).truthy()) return exec(s.bodies[i], out);
        }
        if (s.bodies.size() > s.conds.size()) return exec(s.bodies.back(), out);
        return Flow::Normal;
      case Stmt::Kind::For: return exec_for(s, out);
      case Stmt::Kind::Set: {
        Value v = eval(*s.expr);
        if (s.attr.empty()) {
          assign(s.targets, v);
          return Flow::Normal;
        }
        Value ns = lookup(s.text);
        if (!ns.is_namespace()) rt_fail("cannot assign attribute '{}' on non-namespace object '{}'", s.attr, s.text);
        if (v.has_namespace()) rt_fail("a namespace cannot hold another namespace");
        DictData& d = ns.namespace_data();
        auto it = d.index.find(s.attr);
        if (it != d.index.end()) {
          d.items[it->second].second = v;
        } else {
          d.index.emplace(s.attr, d.items.size());
          d.items.emplace_back(s.attr, v);
        }
        if (v.depth() + 1 > kMaxValueDepth) rt_fail("value nested deeper than {} levels", kMaxValueDepth);
        d.depth = std::max(d.depth, v.depth() + 1);
        return Flow::Normal;
      }
      case Stmt::Kind::SetBlock:
      case Stmt::Kind::FilterBlock: {
        Value v = Value::string(render_body_in_scope(s.bodies[0]));
        for (const auto& f : s.filters) {
          CallArgs args;
          for (size_t i = 1; i < f->args.size(); ++i) args.args.push_back(eval(*f->args[i]));
          for (size_t i = 0; i < f->kwargs.size(); ++i) args.kwargs.emplace_back(f->kwnames[i], eval(*f->kwargs[i]));
          try {
            v = filter(f->name, v, args);
          } catch (const UnlocatedError& e) {
            fail("chat template line {}: {}", f->line, e.what());
          }
        }
        if (s.kind == Stmt::Kind::SetBlock) {
          frame_->vars[s.text] = v;
        } else {
          out += to_str(v);
          check_size(out.size());
        }
        return Flow::Normal;
      }
      case Stmt::Kind::Macro: frame_->vars[s.text] = make_macro(s); return Flow::Normal;
      case Stmt::Kind::Break: return Flow::Break;
      case Stmt::Kind::Continue: return Flow::Continue;
      case Stmt::Kind::With: {
        std::vector<Value> vals;
        for (const auto& d : s.defaults) vals.push_back(eval(*d));
        FrameGuard g(frame_, frame_);
        for (size_t i = 0; i < s.params.size(); ++i) frame_->vars[s.params[i]] = vals[i];
        return exec(s.bodies[0], out);
      }
      case Stmt::Kind::Scope: {
        FrameGuard g(frame_, frame_);
        return exec(s.bodies[0], out);
      }
    }
  } catch (const UnlocatedError& e) {
    fail("chat template line {}: {}", s.line, e.what());
  }
  return Flow::Normal;
}

Renderer::Flow Renderer::exec_for(const Stmt& s, std::string& out) {
  Value iterable = eval(*s.expr);
  ValueList items = iterate(iterable);
  FrameGuard g(frame_, frame_);
  if (s.cond) {
    ValueList kept;
    for (auto& item : items) {
      step();
      assign(s.targets, item);
      if (eval(*s.cond).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (s.bodies.size() > 1) return exec(s.bodies[1], out);
    return Flow::Normal;
  }
  const int64_t n = int64_t(items.size());
  for (int64_t i = 0; i < n; ++i) {
    step();
    assign(s.targets, items[size_t(i)]);
    std::vector<std::pair<std::string, Value>> loop = {
        {"index", Value::integer(i + 1)},     {"index0", Value::integer(i)},
        {"revindex", Value::integer(n - i)},  {"revindex0", Value::integer(n - i - 1)},
        {"first", Value::boolean(i == 0)},    {"last", Value::boolean(i == n - 1)},
        {"length", Value::integer(n)},        {"depth", Value::integer(1)},
        {"depth0", Value::integer(0)},
        {"cycle", Value::function("loop.cycle", [i](Renderer&, CallArgs& a) {
           if (a.args.empty()) rt_fail("loop.cycle() needs at least one argument");
           return a.args[size_t(i) % a.args.size()];
         })},
    };
    if (i > 0) loop.emplace_back("previtem", items[size_t(i - 1)]);
    if (i + 1 < n) loop.emplace_back("nextitem", items[size_t(i + 1)]);
    frame_->vars["loop"] = Value::dict(std::move(loop));
    Flow f = exec(s.bodies[0], out);
    if (f == Flow::Break) break;
  }
  return Flow::Normal;
}

Value Renderer::make_macro(const Stmt& s) {
  std::weak_ptr<Frame> def_frame = frame_;  // weak: the macro is stored in that same frame
  const Stmt* node = &s;
  return Value::function(s.text, [node, def_frame](Renderer& r, CallArgs& a) -> Value {
    if (r.call_depth_ >= r.opt_.max_call_depth) rt_fail("macro calls nested deeper than {}", r.opt_.max_call_depth);
    if (a.args.size() > node->params.size())
      rt_fail("macro '{}' takes not more than {} argument(s)", node->text, node->params.size());
    auto parent = def_frame.lock();
    FrameGuard g(r.frame_, parent ? parent : r.root_);
    struct DepthCount {
      int& d;
      explicit DepthCount(int& dd) : d(dd) { ++d; }
      ~DepthCount() { --d; }
    } dc(r.call_depth_);
    std::vector<bool> set(node->params.size(), false);
    for (size_t i = 0; i < a.args.size(); ++i) {
      r.frame_->vars[node->params[i]] = a.args[i];
      set[i] = true;
    }
    for (auto& [k, v] : a.kwargs) {
      size_t p = 0;
      while (p < node->params.size() && node->params[p] != k) ++p;
      if (p == node->params.size()) rt_fail("macro '{}' has no parameter named '{}'", node->text, k);
      if (set[p]) rt_fail("macro '{}' got multiple values for argument '{}'", node->text, k);
      r.frame_->vars[k] = v;
      set[p] = true;
    }
    for (size_t p = 0; p < node->params.size(); ++p) {
      if (set[p]) continue;
      r.frame_->vars[node->params[p]] =
          node->defaults[p] ? r.eval(*node->defaults[p])
                            : Value::undefined(fmt::format("parameter '{}' was not provided", node->params[p]));
    }
    std::string out;
    r.exec(node->bodies[0], out);
    return Value::string(std::move(out));
  });
}

Value Renderer::eval(const Expr& e) {
  try {
    step();
    return eval_inner(e);
  } catch (const UnlocatedError& ex) {
    fail("chat template line {}: {}", e.line, ex.what());
  }
}

// `{{ '<tag>' + message['content'] }}`: a sum of strings is written operand by operand instead of
// being built first, so a long prompt is not copied once more. Anything else is evaluated as
// written: the same order, steps and errors as eval.
void Renderer::eval_sum(const Expr& e, std::vector<Value>& parts) {
  if (e.kind != Expr::Kind::Binary || e.name != "+") return parts.push_back(eval(e));
  const size_t first = parts.size();
  try {
    step();
    eval_sum(*e.args[0], parts);
    Value b = eval(*e.args[1]);
    const bool strings = std::all_of(parts.begin() + std::ptrdiff_t(first), parts.end(),
                                     [](const Value& v) { return v.is_string(); });
    if (strings && b.is_string()) {
      size_t bytes = b.str().size();
      for (size_t i = first; i < parts.size(); ++i) bytes += parts[i].str().size();
      check_size(bytes);
      return parts.push_back(std::move(b));
    }
    Value a;
    if (parts.size() - first == 1) {
      a = std::move(parts[first]);
    } else {  // several strings, joined as the operator would have
      std::string joined;
      for (size_t i = first; i < parts.size(); ++i) joined += parts[i].str();
      a = Value::string(std::move(joined));
    }
    parts.resize(first);
    parts.push_back(binary_op(*this, e.name, a, b));
  } catch (const UnlocatedError& ex) {
    fail("chat template line {}: {}", e.line, ex.what());
  }
}

Value Renderer::eval_inner(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::Literal: return e.value;
    case Expr::Kind::Name: return lookup(e.name);
    case Expr::Kind::List:
    case Expr::Kind::Tuple: {
      ValueList items;
      for (const auto& a : e.args) items.push_back(eval(*a));
      return Value::list(std::move(items));
    }
    case Expr::Kind::Dict: {
      std::vector<std::pair<std::string, Value>> items;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
        Value k = eval(*e.args[i]);
        if (!k.is_string()) rt_fail("only string keys are supported in dict literals, got {}", k.type_name());
        items.emplace_back(k.str(), eval(*e.args[i + 1]));
      }
      return Value::dict(std::move(items));
    }
    case Expr::Kind::Attr: return get_attr(*this, eval(*e.args[0]), e.name);
    case Expr::Kind::Index: {
      Value obj = eval(*e.args[0]);
      return get_item(*this, obj, eval(*e.args[1]));
    }
    case Expr::Kind::Slice: {
      Value obj = eval(*e.args[0]);
      Value parts[3];
      for (int i = 0; i < 3; ++i)
        if (e.args[size_t(i) + 1]) parts[i] = eval(*e.args[size_t(i) + 1]);
      return get_slice(obj, parts[0], parts[1], parts[2]);
    }
    case Expr::Kind::Call:
    case Expr::Kind::Filter:
    case Expr::Kind::Test: {
      Value first = eval(*e.args[0]);
      CallArgs args;
      for (size_t i = 1; i < e.args.size(); ++i) args.args.push_back(eval(*e.args[i]));
      for (size_t i = 0; i < e.kwargs.size(); ++i) args.kwargs.emplace_back(e.kwnames[i], eval(*e.kwargs[i]));
      if (e.kind == Expr::Kind::Call) return call(first, args);
      if (e.kind == Expr::Kind::Filter) return filter(e.name, first, args);
      return Value::boolean(test(e.name, first, args) != e.negated);
    }
    case Expr::Kind::Neg: return negate(eval(*e.args[0]));
    case Expr::Kind::Pos: {
      Value v = eval(*e.args[0]);
      if (!v.is_number()) rt_fail("bad operand type for unary +: '{}'", v.type_name());
      return v.is_bool() ? Value::integer(v.as_int()) : v;
    }
    case Expr::Kind::Not: return Value::boolean(!eval(*e.args[0]).truthy());
    case Expr::Kind::And: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    case Expr::Kind::Or: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    case Expr::Kind::Cond: {
      if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
      if (e.args.size() > 2) return eval(*e.args[2]);
      return Value::undefined("the conditional expression has no else branch");
    }
    case Expr::Kind::Binary: {
      Value a = eval(*e.args[0]);
      Value b = eval(*e.args[1]);
      return binary_op(*this, e.name, a, b);
    }
    case Expr::Kind::Compare: {
      Value left = eval(*e.args[0]);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.args[i + 1]);
        const std::string& op = e.ops[i];
        bool r;
        if (op == "==") r = equals(left, right);
        else if (op == "!=") r = !equals(left, right);
        else if (op == "<") r = less(left, right);
        else if (op == "<=") r = less(left, right) || equals(left, right);
        else if (op == ">") r = less(right, left);
        else if (op == ">=") r = less(right, left) || equals(left, right);
        else if (op == "in") r = contains(right, left);
        else r = !contains(right, left);
        if (!r) return Value::boolean(false);
        left = std::move(right);
      }
      return Value::boolean(true);
    }
  }
  rt_fail("unsupported expression");
}

// ---- ArgReader ----

bool ArgReader::has(size_t pos, const char* name) const {
  if (pos < a_.args.size()) return true;
  for (const auto& kv : a_.kwargs)
    if (kv.first == name) return true;
  return false;
}

Value ArgReader::get(size_t pos, const char* name, Value def) {
  if (used_kw_.size() < a_.kwargs.size()) used_kw_.resize(a_.kwargs.size(), false);
  for (size_t i = 0; i < a_.kwargs.size(); ++i) {
    if (a_.kwargs[i].first == name) {
      if (pos < a_.args.size()) rt_fail("{} got multiple values for argument '{}'", what_, name);
      used_kw_[i] = true;
      return a_.kwargs[i].second;
    }
  }
  if (pos < a_.args.size()) return a_.args[pos];
  return def;
}

void ArgReader::done(size_t max_positional) {
  if (a_.args.size() > max_positional)
    rt_fail("{} takes at most {} argument(s), got {}", what_, max_positional, a_.args.size());
  if (used_kw_.size() < a_.kwargs.size()) used_kw_.resize(a_.kwargs.size(), false);
  for (size_t i = 0; i < a_.kwargs.size(); ++i)
    if (!used_kw_[i]) rt_fail("{} got an unexpected keyword argument '{}'", what_, a_.kwargs[i].first);
}

// ---- Template ----

Template Template::parse(const std::string& source, Options opt) {
  Template t;
  t.prog_ = jinja::parse(source, opt.lex);
  t.opt_ = opt;
  return t;
}

std::string Template::render(const Context& vars) const {
  Renderer r(opt_, vars);
  try {
    return r.run(*prog_);
  } catch (const UnlocatedError& e) {
    fail("chat template: {}", e.what());
  }
}

}  // namespace fathom::jinja
