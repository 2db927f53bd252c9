#include "template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <type_traits>
#include <utility>

#include "template/errors.h"

namespace fathom::jinja {

namespace {

void check_depth(int depth) {
  if (depth > kMaxValueDepth) rt_fail("value nested deeper than {} levels", kMaxValueDepth);
}

// An rvalue's strings are moved into the values, not copied: a chat request's messages may
// hold a prompt of megabytes.
template <typename Json>
Value json_to_value(Json&& j, int depth) {
  constexpr bool kMove = std::is_rvalue_reference_v<Json&&>;
  using J = std::remove_cvref_t<Json>;
  check_depth(depth);
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.template get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > uint64_t(INT64_MAX)) return Value::number(double(u));
      return Value::integer(int64_t(u));
    }
    case nlohmann::json::value_t::number_float: return Value::number(j.template get<double>());
    case nlohmann::json::value_t::string:
      if constexpr (kMove) return Value::string(std::move(j.template get_ref<typename J::string_t&>()));
      else return Value::string(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (auto& e : j) {
        if constexpr (kMove) items.push_back(json_to_value(std::move(e), depth + 1));
        else items.push_back(json_to_value(e, depth + 1));
      }
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      std::vector<std::pair<std::string, Value>> items;
      items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) {
        if constexpr (kMove) items.emplace_back(it.key(), json_to_value(std::move(it.value()), depth + 1));
        else items.emplace_back(it.key(), json_to_value(it.value(), depth + 1));
      }
      return Value::dict(std::move(items));
    }
    default: rt_fail("unsupported JSON value (binary)");
  }
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += char(c);
  } else if (c < 0x800) {
    out += char(0xC0 | (c >> 6));
    out += char(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += char(0xE0 | (c >> 12));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  } else {
    out += char(0xF0 | (c >> 18));
    out += char(0x80 | ((c >> 12) & 0x3F));
    out += char(0x80 | ((c >> 6) & 0x3F));
    out += char(0x80 | (c & 0x3F));
  }
}

// Python's repr of a str: single quotes unless the text has ' and no ".
void repr_string(std::string& out, const std::string& s) {
  char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  out += q;
  for (char32_t c : utf8_decode(s)) {
    if (c == char32_t(q) || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) {
      out += fmt::format("\\x{:02x}", uint32_t(c));
    } else {
      append_utf8(out, c);
    }
  }
  out += q;
}

void repr_into(std::string& out, const Value& v) {
  switch (v.kind()) {
    case Value::Kind::String: repr_string(out, v.str()); return;
    case Value::Kind::List: {
      out += '[';
      bool first = true;
      for (const auto& e : v.items()) {
        if (!first) out += ", ";
        first = false;
        repr_into(out, e);
      }
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      out += '{';
      bool first = true;
      for (const auto& [k, e] : v.dict_data().items) {
        if (!first) out += ", ";
        first = false;
        repr_string(out, k);
        out += ": ";
        repr_into(out, e);
      }
      out += '}';
      return;
    }
    case Value::Kind::Namespace: {
      out += "<Namespace {";
      bool first = true;
      for (const auto& [k, e] : v.namespace_data().items) {
        if (!first) out += ", ";
        first = false;
        repr_string(out, k);
        out += ": ";
        repr_into(out, e);
      }
      out += "}>";
      return;
    }
    default: out += to_str(v);
  }
}

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  for (char32_t c : utf8_decode(s)) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", uint32_t(c));
        } else if (ensure_ascii && c > 0x7E) {
          if (c >= 0x10000) {
            char32_t v = c - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", uint32_t(0xD800 + (v >> 10)), uint32_t(0xDC00 + (v & 0x3FF)));
          } else {
            out += fmt::format("\\u{:04x}", uint32_t(c));
          }
        } else {
          append_utf8(out, c);
        }
    }
  }
  out += '"';
}

void json_into(std::string& out, const Value& v, const JsonOptions& opt, int level) {
  auto newline = [&](int lvl) {
    out += '\n';
    for (int i = 0; i < lvl; ++i) out += opt.indent;
  };
  switch (v.kind()) {
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.as_int()); return;
    case Value::Kind::Float: {
      double d = v.as_double();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d > 0 ? "Infinity" : "-Infinity";
      else out += float_repr(d);
      return;
    }
    case Value::Kind::String: json_string(out, v.str(), opt.ensure_ascii); return;
    case Value::Kind::List: {
      const auto& items = v.items();
      if (items.empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t i = 0; i < items.size(); ++i) {
        if (i) out += opt.item_sep;
        if (opt.has_indent) newline(level + 1);
        json_into(out, items[i], opt, level + 1);
      }
      if (opt.has_indent) newline(level);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      const auto& d = v.dict_data();
      if (d.items.empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> order;
      for (const auto& kv : d.items) order.push_back(&kv);
      if (opt.sort_keys)
        std::stable_sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t i = 0; i < order.size(); ++i) {
        if (i) out += opt.item_sep;
        if (opt.has_indent) newline(level + 1);
        json_string(out, order[i]->first, opt.ensure_ascii);
        out += opt.key_sep;
        json_into(out, order[i]->second, opt, level + 1);
      }
      if (opt.has_indent) newline(level);
      out += '}';
      return;
    }
    default: rt_fail("Object of type {} is not JSON serializable", v.type_name());
  }
}

}  // namespace

const Value* DictData::find(std::string_view key) const {
  auto it = index.find(std::string(key));
  return it == index.end() ? nullptr : &items[it->second].second;
}

Value Value::undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.s_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}
Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::Bool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::Int;
  v.i_ = i;
  return v;
}
Value Value::number(double d) {
  Value v;
  v.kind_ = Kind::Float;
  v.d_ = d;
  return v;
}
Value Value::string(std::string s) {
  Value v;
  v.kind_ = Kind::String;
  v.s_ = std::make_shared<const std::string>(std::move(s));
  return v;
}
Value Value::list(ValueList items) {
  auto data = std::make_shared<ListData>();
  for (const auto& e : items) {
    data->depth = std::max(data->depth, e.depth() + 1);
    data->has_namespace = data->has_namespace || e.has_namespace();
  }
  check_depth(data->depth);
  data->items = std::move(items);
  Value v;
  v.kind_ = Kind::List;
  v.l_ = std::move(data);
  return v;
}
Value Value::dict(std::vector<std::pair<std::string, Value>> items) {
  auto data = std::make_shared<DictData>();
  for (auto& [k, e] : items) {
    data->depth = std::max(data->depth, e.depth() + 1);
    data->has_namespace = data->has_namespace || e.has_namespace();
    auto it = data->index.find(k);
    if (it != data->index.end()) {
      data->items[it->second].second = std::move(e);
    } else {
      data->index.emplace(k, data->items.size());
      data->items.emplace_back(std::move(k), std::move(e));
    }
  }
  check_depth(data->depth);
  Value v;
  v.kind_ = Kind::Dict;
  v.m_ = std::move(data);
  return v;
}
Value Value::make_namespace(std::vector<std::pair<std::string, Value>> items) {
  Value v = dict(std::move(items));
  for (const auto& kv : v.m_->items)
    if (kv.second.has_namespace()) rt_fail("a namespace cannot hold another namespace");
  v.kind_ = Kind::Namespace;
  return v;
}
Value Value::function(std::string name, std::function<Value(Renderer&, CallArgs&)> fn) {
  Value v;
  v.kind_ = Kind::Callable;
  v.f_ = std::make_shared<const Function>(Function{std::move(name), std::move(fn)});
  return v;
}
Value Value::from_json(const nlohmann::json& j) { return json_to_value(j, 1); }
Value Value::from_json(const nlohmann::ordered_json& j) { return json_to_value(j, 1); }
Value Value::from_json(nlohmann::json&& j) { return json_to_value(std::move(j), 1); }

const ValueList& Value::items() const { return l_->items; }
const DictData& Value::dict_data() const { return *m_; }
DictData& Value::namespace_data() const { return *m_; }

int Value::depth() const {
  if (kind_ == Kind::List) return l_->depth;
  if (kind_ == Kind::Dict || kind_ == Kind::Namespace) return m_->depth;
  return 0;
}
bool Value::has_namespace() const {
  if (kind_ == Kind::Namespace) return true;
  if (kind_ == Kind::List) return l_->has_namespace;
  if (kind_ == Kind::Dict) return m_->has_namespace;
  return false;
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return d_ != 0;
    case Kind::String: return !s_->empty();
    case Kind::List: return !l_->items.empty();
    case Kind::Dict: return !m_->items.empty();
    default: return true;
  }
}

const std::string& Value::undefined_hint() const {
  static const std::string kEmpty;
  return (kind_ == Kind::Undefined && s_) ? *s_ : kEmpty;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Namespace: return "Namespace";
    case Kind::Callable: return "function";
  }
  return "?";
}

std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  std::string sci(buf, r.ptr);  // "-d.ddde+XX"
  bool neg = sci[0] == '-';
  if (neg) sci.erase(0, 1);
  size_t epos = sci.find('e');
  int exp = std::stoi(sci.substr(epos + 1));
  std::string digits = sci.substr(0, epos);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {
    out += digits[0];
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  } else if (exp < 0) {
    out += "0." + std::string(size_t(-exp - 1), '0') + digits;
  } else {
    size_t int_len = size_t(exp) + 1;
    if (digits.size() <= int_len) {
      out += digits + std::string(int_len - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, int_len) + "." + digits.substr(int_len);
    }
  }
  return out;
}

std::string to_str(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return "";
    case Value::Kind::None: return "None";
    case Value::Kind::Bool: return v.as_bool() ? "True" : "False";
    case Value::Kind::Int: return std::to_string(v.as_int());
    case Value::Kind::Float: return float_repr(v.as_double());
    case Value::Kind::String: return v.str();
    case Value::Kind::Callable: return "<function " + v.func().name + ">";
    default: {
      std::string out;
      repr_into(out, v);
      return out;
    }
  }
}

std::string repr(const Value& v) {
  std::string out;
  repr_into(out, v);
  return out;
}

std::string to_json(const Value& v, const JsonOptions& opt) {
  std::string out;
  json_into(out, v, opt, 0);
  return out;
}

bool equals(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::Undefined:
    case Value::Kind::None: return true;
    case Value::Kind::String: return a.str() == b.str();
    case Value::Kind::List: {
      const auto &x = a.items(), &y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equals(x[i], y[i])) return false;
      return true;
    }
    case Value::Kind::Dict: {
      const auto &x = a.dict_data(), &y = b.dict_data();
      if (x.items.size() != y.items.size()) return false;
      for (const auto& [k, e] : x.items) {
        const Value* o = y.find(k);
        if (!o || !equals(e, *o)) return false;
      }
      return true;
    }
    case Value::Kind::Namespace: return &a.namespace_data() == &b.namespace_data();
    case Value::Kind::Callable: return &a.func() == &b.func();
    default: return false;
  }
}

bool less(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_double() < b.as_double();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 byte order = code point order
  if (a.is_list() && b.is_list()) {
    const auto &x = a.items(), &y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals(x[i], y[i])) return less(x[i], y[i]);
    }
    return x.size() < y.size();
  }
  rt_fail("'<' not supported between instances of '{}' and '{}'", a.type_name(), b.type_name());
}

ValueList iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return v.items();
    case Value::Kind::Dict: {
      ValueList keys;
      for (const auto& kv : v.dict_data().items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Value::Kind::String: {
      ValueList chars;
      for (char32_t c : utf8_decode(v.str())) chars.push_back(Value::string(utf8_encode(std::u32string_view(&c, 1))));
      return chars;
    }
    default: rt_fail("'{}' object is not iterable", v.type_name());
  }
}

std::u32string utf8_decode(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += char32_t(c);
      ++i;
      continue;
    }
    int n = (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0 || i + size_t(n) >= s.size()) {
      out += char32_t(0xFFFD);
      ++i;
      continue;
    }
    char32_t cp = n == 1 ? (c & 0x1F) : n == 2 ? (c & 0x0F) : (c & 0x07);
    bool ok = true;
    for (int k = 1; k <= n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((cc >> 6) != 2) {
        ok = false;
        break;
      }
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (!ok || cp > 0x10FFFF) {
      out += char32_t(0xFFFD);
      ++i;
      continue;
    }
    out += cp;
    i += size_t(n) + 1;
  }
  return out;
}

std::string utf8_encode(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c > 0x10FFFF ? char32_t(0xFFFD) : c);
  return out;
}

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace fathom::jinja
