#pragma once
// Runtime values of the Jinja interpreter, modelled on the Python objects that transformers
// hands to jinja2: None, bool, int, float, str, list, dict, plus jinja's Undefined, namespace
// objects and callables. Lists and dicts are immutable once built (transformers renders in an
// ImmutableSandboxedEnvironment, so templates cannot mutate them); only namespaces change.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace fathom::jinja {

class Value;
class Renderer;

using ValueList = std::vector<Value>;

// Nesting is capped so that printing, comparing and destroying values never recurse deeply.
inline constexpr int kMaxValueDepth = 128;

struct ListData {
  ValueList items;
  int depth = 1;
  bool has_namespace = false;
};

struct DictData {
  std::vector<std::pair<std::string, Value>> items;  // insertion order, as Python dicts
  std::unordered_map<std::string, size_t> index;
  int depth = 1;
  bool has_namespace = false;
  const Value* find(std::string_view key) const;
};

// Arguments of a call: positional, then keyword in source order.
struct CallArgs {
  ValueList args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

struct Function {
  std::string name;
  std::function<Value(Renderer&, CallArgs&)> fn;
};

class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Namespace, Callable };

  Value() = default;  // Undefined
  static Value undefined(std::string hint = {});
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double d);
  static Value string(std::string s);
  static Value list(ValueList items);
  static Value dict(std::vector<std::pair<std::string, Value>> items);  // later duplicates win
  static Value make_namespace(std::vector<std::pair<std::string, Value>> items);
  static Value function(std::string name, std::function<Value(Renderer&, CallArgs&)> fn);
  static Value from_json(const nlohmann::json& j);
  static Value from_json(const nlohmann::ordered_json& j);
  static Value from_json(nlohmann::json&& j);  // moves j's strings

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_int() const { return kind_ == Kind::Int; }  // not bool, as Python's "is integer"
  bool is_float() const { return kind_ == Kind::Float; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float || kind_ == Kind::Bool; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_namespace() const { return kind_ == Kind::Namespace; }
  bool is_callable() const { return kind_ == Kind::Callable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return kind_ == Kind::Bool ? int64_t(b_) : i_; }  // bool is an int in Python
  double as_double() const { return kind_ == Kind::Float ? d_ : double(as_int()); }
  const std::string& str() const { return *s_; }  // String (or Undefined's hint)
  const ValueList& items() const;                 // List
  const DictData& dict_data() const;              // Dict
  DictData& namespace_data() const;               // Namespace (mutable by design)
  const Function& func() const { return *f_; }

  // Nesting depth (1 for lists/dicts of scalars) and whether a namespace is reachable.
  int depth() const;
  bool has_namespace() const;

  bool truthy() const;
  const std::string& undefined_hint() const;

  std::string type_name() const;  // Python's type name, for error messages

 private:
  Kind kind_ = Kind::Undefined;
  bool b_ = false;
  int64_t i_ = 0;
  double d_ = 0;
  std::shared_ptr<const std::string> s_;
  std::shared_ptr<ListData> l_;
  std::shared_ptr<DictData> m_;
  std::shared_ptr<const Function> f_;
};

// Python str(): what {{ value }} prints.
std::string to_str(const Value& v);
// Python repr().
std::string repr(const Value& v);
// Python repr() of a float ("1.0", "1e-05", "inf").
std::string float_repr(double d);
// Python json.dumps with the arguments transformers' tojson filter accepts.
struct JsonOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_indent = false;
  std::string indent;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
};
std::string to_json(const Value& v, const JsonOptions& opt);

bool equals(const Value& a, const Value& b);
// Python ordering (<); fails for unorderable types.
bool less(const Value& a, const Value& b);

// Iteration as Python's iter(): list items, dict keys, string characters; Undefined is empty.
ValueList iterate(const Value& v);

// UTF-8 helpers; invalid bytes decode to U+FFFD so that nothing here can fail.
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
bool is_py_space(char32_t c);

}  // namespace fathom::jinja
