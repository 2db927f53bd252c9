// Operators, attribute and item access, and the Python str/dict/list methods templates call.
#include <cmath>

#include "template/errors.h"
#include "template/eval.h"
#include "template/strings.h"

namespace fathom::jinja {

namespace {

[[noreturn]] void fail_undefined(const Value& v) {
  rt_fail("{}", v.undefined_hint().empty() ? std::string("use of an undefined value") : v.undefined_hint());
}

Value bound(const std::string& name, std::function<Value(Renderer&, CallArgs&)> fn) {
  return Value::function(name, std::move(fn));
}

bool is_mutator(const std::string& name) {
  static const char* names[] = {"append", "extend", "insert", "pop", "remove", "clear", "sort",
                                "reverse", "update", "setdefault", "popitem"};
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

int64_t to_index(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  rt_fail("{} must be an integer, not '{}'", what, v.type_name());
}

Value string_method(const std::string& s, const std::string& name) {
  auto m = [&](auto fn) { return bound("str." + name, fn); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    bool l = name != "rstrip", r = name != "lstrip";
    return m([s, l, r, name](Renderer&, CallArgs& a) {
      ArgReader ar(a, "str." + name + "()");
      Value chars = ar.get(0, "chars");
      ar.done(1);
      if (!chars.is_undefined() && !chars.is_none() && !chars.is_string())
        rt_fail("str.{}() argument must be str or None", name);
      return Value::string(py_strip(s, chars.is_string() ? &chars.str() : nullptr, l, r));
    });
  }
  if (name == "split" || name == "rsplit") {
    bool right = name == "rsplit";
    return m([s, right, name](Renderer&, CallArgs& a) {
      ArgReader ar(a, "str." + name + "()");
      Value sep = ar.get(0, "sep");
      Value maxsplit = ar.get(1, "maxsplit", Value::integer(-1));
      ar.done(2);
      if (!sep.is_undefined() && !sep.is_none() && !sep.is_string()) rt_fail("str.{}() separator must be str", name);
      auto parts = py_split(s, sep.is_string() ? &sep.str() : nullptr, to_index(maxsplit, "maxsplit"), right);
      ValueList out;
      for (auto& p : parts) out.push_back(Value::string(std::move(p)));
      return Value::list(std::move(out));
    });
  }
  if (name == "startswith" || name == "endswith") {
    bool start = name == "startswith";
    return m([s, start, name](Renderer&, CallArgs& a) {
      ArgReader ar(a, "str." + name + "()");
      Value p = ar.get(0, "prefix");
      ar.done(1);
      ValueList options = p.is_list() ? p.items() : ValueList{p};
      for (const auto& o : options) {
        if (!o.is_string()) rt_fail("str.{}() argument must be str or a tuple of str", name);
        const std::string& x = o.str();
        if (x.size() <= s.size() && (start ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0))
          return Value::boolean(true);
      }
      return Value::boolean(false);
    });
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" || name == "swapcase") {
    return m([s, name](Renderer&, CallArgs& a) {
      ArgReader(a, "str." + name + "()").done(0);
      if (name == "upper") return Value::string(py_upper(s));
      if (name == "lower") return Value::string(py_lower(s));
      if (name == "title") return Value::string(py_title(s));
      if (name == "capitalize") return Value::string(py_capitalize(s));
      return Value::string(py_swapcase(s));
    });
  }
  if (name == "replace") {
    return m([s](Renderer& r, CallArgs& a) {
      ArgReader ar(a, "str.replace()");
      Value old = ar.get(0, "old"), neu = ar.get(1, "new"), count = ar.get(2, "count", Value::integer(-1));
      ar.done(3);
      if (!old.is_string() || !neu.is_string()) rt_fail("str.replace() arguments must be str");
      std::string out = py_replace(s, old.str(), neu.str(), to_index(count, "count"), r.options().max_output_bytes);
      return Value::string(std::move(out));
    });
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    return m([s, name](Renderer&, CallArgs& a) {
      ArgReader ar(a, "str." + name + "()");
      Value sub = ar.get(0, "sub");
      ar.done(1);
      if (!sub.is_string()) rt_fail("str.{}() argument must be str", name);
      if (name == "count") return Value::integer(py_count(s, sub.str()));
      size_t pos = (name == "find" || name == "index") ? s.find(sub.str()) : s.rfind(sub.str());
      if (pos == std::string::npos) {
        if (name == "index" || name == "rindex") rt_fail("substring not found");
        return Value::integer(-1);
      }
      return Value::integer(int64_t(utf8_length(std::string_view(s).substr(0, pos))));
    });
  }
  if (name == "join") {
    return m([s](Renderer& r, CallArgs& a) {
      ArgReader ar(a, "str.join()");
      Value it = ar.get(0, "iterable");
      ar.done(1);
      std::string out;
      bool first = true;
      for (const auto& e : iterate(it)) {
        if (!e.is_string()) rt_fail("sequence item: expected str instance, {} found", e.type_name());
        if (!first) out += s;
        first = false;
        out += e.str();
        r.check_size(out.size());
      }
      return Value::string(std::move(out));
    });
  }
  if (name == "splitlines") {
    return m([s](Renderer&, CallArgs& a) {
      ArgReader(a, "str.splitlines()").done(0);
      ValueList out;
      for (auto& l : py_splitlines(s)) out.push_back(Value::string(std::move(l)));
      return Value::list(std::move(out));
    });
  }
  if (name == "format") {
    return m([s](Renderer& r, CallArgs& a) { return Value::string(py_format(r, s, a)); });
  }
  if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" || name == "isupper" ||
      name == "islower") {
    return m([s, name](Renderer&, CallArgs& a) {
      ArgReader(a, "str." + name + "()").done(0);
      return Value::boolean(py_is(s, name));
    });
  }
  return Value::undefined(fmt::format("'str object' has no attribute '{}'", name));
}

Value dict_method(const Value& d, const std::string& name) {
  if (name == "items" || name == "keys" || name == "values") {
    return bound("dict." + name, [d, name](Renderer&, CallArgs& a) {
      ArgReader(a, "dict." + name + "()").done(0);
      ValueList out;
      for (const auto& [k, v] : d.dict_data().items) {
        if (name == "items") out.push_back(Value::list({Value::string(k), v}));
        else if (name == "keys") out.push_back(Value::string(k));
        else out.push_back(v);
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return bound("dict.get", [d](Renderer&, CallArgs& a) {
      ArgReader ar(a, "dict.get()");
      Value key = ar.get(0, "key"), def = ar.get(1, "default", Value::none());
      ar.done(2);
      if (!key.is_string()) return def;
      const Value* v = d.dict_data().find(key.str());
      return v ? *v : def;
    });
  }
  return Value();
}

Value list_method(const Value& l, const std::string& name) {
  if (name == "index" || name == "count") {
    return bound("list." + name, [l, name](Renderer&, CallArgs& a) {
      ArgReader ar(a, "list." + name + "()");
      Value x = ar.get(0, "value");
      ar.done(1);
      int64_t n = 0;
      const auto& items = l.items();
      for (size_t i = 0; i < items.size(); ++i) {
        if (!equals(items[i], x)) continue;
        if (name == "index") return Value::integer(int64_t(i));
        ++n;
      }
      if (name == "index") rt_fail("value is not in list");
      return Value::integer(n);
    });
  }
  return Value();
}

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) rt_fail("integer overflow");
  return r;
}
int64_t checked_sub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) rt_fail("integer overflow");
  return r;
}
int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) rt_fail("integer overflow");
  return r;
}

int64_t floordiv(int64_t a, int64_t b) {
  if (b == 0) rt_fail("integer division or modulo by zero");
  if (a == INT64_MIN && b == -1) rt_fail("integer overflow");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floormod(int64_t a, int64_t b) {
  if (b == 0) rt_fail("integer division or modulo by zero");
  if (b == -1) return 0;
  int64_t m = a % b;
  if (m != 0 && ((m < 0) != (b < 0))) m += b;
  return m;
}

Value repeat(Renderer& r, const Value& seq, int64_t n) {
  if (n <= 0) return seq.is_string() ? Value::string("") : Value::list({});
  if (seq.is_string()) {
    r.check_size(seq.str().size() * size_t(std::min<int64_t>(n, int64_t(r.options().max_output_bytes) + 1)));
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.str();
    return Value::string(std::move(out));
  }
  r.check_size(seq.items().size() * size_t(std::min<int64_t>(n, int64_t(r.options().max_output_bytes) + 1)) * 8);
  ValueList out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(out));
}

}  // namespace

Value get_attr(Renderer& r, const Value& obj, const std::string& name) {
  (void)r;
  switch (obj.kind()) {
    case Value::Kind::Undefined: fail_undefined(obj);
    case Value::Kind::Dict: {
      Value m = dict_method(obj, name);
      if (m.is_callable()) return m;
      if (is_mutator(name)) rt_fail("dict.{} is not allowed: chat template values are immutable", name);
      const Value* v = obj.dict_data().find(name);
      if (v) return *v;
      return Value::undefined(fmt::format("'dict object' has no attribute '{}'", name));
    }
    case Value::Kind::Namespace: {
      const Value* v = obj.namespace_data().find(name);
      if (v) return *v;
      return Value::undefined(fmt::format("'Namespace object' has no attribute '{}'", name));
    }
    case Value::Kind::String: return string_method(obj.str(), name);
    case Value::Kind::List: {
      Value m = list_method(obj, name);
      if (m.is_callable()) return m;
      if (is_mutator(name)) rt_fail("list.{} is not allowed: chat template values are immutable", name);
      return Value::undefined(fmt::format("'list object' has no attribute '{}'", name));
    }
    default: return Value::undefined(fmt::format("'{} object' has no attribute '{}'", obj.type_name(), name));
  }
}

Value get_item(Renderer& r, const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::Undefined: fail_undefined(obj);
    case Value::Kind::Dict:
    case Value::Kind::Namespace: {
      if (key.is_string()) {
        const DictData& d = obj.is_dict() ? obj.dict_data() : obj.namespace_data();
        const Value* v = d.find(key.str());
        if (v) return *v;
        if (obj.is_dict()) {  // jinja falls back to attribute lookup (d['items'] is the method)
          Value m = dict_method(obj, key.str());
          if (m.is_callable()) return m;
        }
      }
      return Value::undefined(fmt::format("'{} object' has no attribute {}", obj.type_name(), repr(key)));
    }
    case Value::Kind::List:
    case Value::Kind::String: {
      if (key.is_string()) return get_attr(r, obj, key.str());
      if (!key.is_int() && !key.is_bool())
        rt_fail("{} indices must be integers or slices, not {}", obj.type_name(), key.type_name());
      int64_t i = key.as_int();
      if (obj.is_list()) {
        int64_t n = int64_t(obj.items().size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined(fmt::format("list index {} out of range", key.as_int()));
        return obj.items()[size_t(i)];
      }
      std::u32string u = utf8_decode(obj.str());
      int64_t n = int64_t(u.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined(fmt::format("string index {} out of range", key.as_int()));
      return Value::string(utf8_encode(u.substr(size_t(i), 1)));
    }
    default: return Value::undefined(fmt::format("'{}' object is not subscriptable", obj.type_name()));
  }
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  if (obj.is_undefined()) fail_undefined(obj);
  if (!obj.is_list() && !obj.is_string()) rt_fail("'{}' object is not subscriptable", obj.type_name());
  auto given = [](const Value& v) { return !v.is_undefined() && !v.is_none(); };
  int64_t st = given(step) ? to_index(step, "slice step") : 1;
  if (st == 0) rt_fail("slice step cannot be zero");
  std::u32string u;
  int64_t n;
  if (obj.is_list()) {
    n = int64_t(obj.items().size());
  } else {
    u = utf8_decode(obj.str());
    n = int64_t(u.size());
  }
  auto clamp = [&](const Value& v, int64_t def) {
    if (!given(v)) return def;
    int64_t i = to_index(v, "slice index");
    if (i < 0) {
      i = i < -n ? -1 : i + n;
      if (i < 0) i = st > 0 ? 0 : -1;
    } else if (i >= n) {
      i = st > 0 ? n : n - 1;
    }
    return i;
  };
  int64_t b = clamp(start, st > 0 ? 0 : n - 1);
  int64_t e = clamp(stop, st > 0 ? n : -1);
  std::vector<size_t> idx;
  if (st > 0)
    for (int64_t i = b; i < e; i += st) idx.push_back(size_t(i));
  else
    for (int64_t i = b; i > e; i += st) idx.push_back(size_t(i));
  if (obj.is_list()) {
    ValueList out;
    for (size_t i : idx) out.push_back(obj.items()[i]);
    return Value::list(std::move(out));
  }
  std::u32string out;
  for (size_t i : idx) out += u[i];
  return Value::string(utf8_encode(out));
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::Undefined: return false;
    case Value::Kind::String:
      if (!item.is_string()) rt_fail("'in <string>' requires string as left operand, not {}", item.type_name());
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::List:
      for (const auto& e : container.items())
        if (equals(e, item)) return true;
      return false;
    case Value::Kind::Dict: return item.is_string() && container.dict_data().find(item.str()) != nullptr;
    default: rt_fail("argument of type '{}' is not iterable", container.type_name());
  }
}

Value negate(const Value& v) {
  if (v.is_float()) return Value::number(-v.as_double());
  if (v.is_number()) {
    if (v.as_int() == INT64_MIN) rt_fail("integer overflow");
    return Value::integer(-v.as_int());
  }
  if (v.is_undefined()) fail_undefined(v);
  rt_fail("bad operand type for unary -: '{}'", v.type_name());
}

Value binary_op(Renderer& r, const std::string& op, const Value& a, const Value& b) {
  if (op == "~") {
    std::string s = to_str(a);
    std::string t = to_str(b);
    r.check_size(s.size() + t.size());
    return Value::string(s + t);
  }
  if (a.is_undefined()) fail_undefined(a);
  if (b.is_undefined()) fail_undefined(b);
  const bool nums = a.is_number() && b.is_number();
  const bool ints = nums && !a.is_float() && !b.is_float();
  const int64_t x = ints ? a.as_int() : 0, y = ints ? b.as_int() : 0;
  if (op == "+") {
    if (ints) return Value::integer(checked_add(x, y));
    if (nums) return Value::number(a.as_double() + b.as_double());
    if (a.is_string() && b.is_string()) {
      r.check_size(a.str().size() + b.str().size());
      return Value::string(a.str() + b.str());
    }
    if (a.is_list() && b.is_list()) {
      ValueList out = a.items();
      out.insert(out.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(out));
    }
    if (a.is_string()) rt_fail("can only concatenate str (not \"{}\") to str", b.type_name());
    if (a.is_list()) rt_fail("can only concatenate list (not \"{}\") to list", b.type_name());
  } else if (op == "-") {
    if (ints) return Value::integer(checked_sub(x, y));
    if (nums) return Value::number(a.as_double() - b.as_double());
  } else if (op == "*") {
    if (ints) return Value::integer(checked_mul(x, y));
    if (nums) return Value::number(a.as_double() * b.as_double());
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return repeat(r, a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return repeat(r, b, a.as_int());
  } else if (op == "/") {
    if (nums) {
      if (b.as_double() == 0) rt_fail("division by zero");
      return Value::number(a.as_double() / b.as_double());
    }
  } else if (op == "//") {
    if (ints) return Value::integer(floordiv(x, y));
    if (nums) {
      if (b.as_double() == 0) rt_fail("float floor division by zero");
      return Value::number(std::floor(a.as_double() / b.as_double()));
    }
  } else if (op == "%") {
    if (ints) return Value::integer(floormod(x, y));
    if (nums) {
      double p = a.as_double(), q = b.as_double();
      if (q == 0) rt_fail("float modulo by zero");
      double m = std::fmod(p, q);
      if (m != 0 && ((m < 0) != (q < 0))) m += q;
      return Value::number(m);
    }
    if (a.is_string()) rt_fail("printf-style string formatting ('%') is not supported");
  } else if (op == "**") {
    if (ints && y >= 0) {
      int64_t result = 1, base = x, e = y;
      while (e > 0) {
        if (e & 1) result = checked_mul(result, base);
        e >>= 1;
        if (e > 0) base = checked_mul(base, base);
      }
      return Value::integer(result);
    }
    if (nums) {
      if (a.as_double() == 0 && b.as_double() < 0) rt_fail("0.0 cannot be raised to a negative power");
      return Value::number(std::pow(a.as_double(), b.as_double()));
    }
  }
  rt_fail("unsupported operand type(s) for {}: '{}' and '{}'", op, a.type_name(), b.type_name());
}

}  // namespace fathom::jinja
