// jinja2's builtin filters and tests that chat templates use, transformers' tojson override,
// and the globals (range, namespace, dict, raise_exception, strftime_now).
#include <algorithm>
#include <cmath>
#include <ctime>

#include "core/error.h"
#include "template/errors.h"
#include "template/eval.h"
#include "template/strings.h"

namespace fathom::jinja {

namespace {

// jinja2's sandbox refuses ranges longer than this.
constexpr int64_t kMaxRange = 100000;

int64_t as_integer(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  rt_fail("{} must be an integer, not '{}'", what, v.type_name());
}

std::string as_string(const Value& v, const char* what) {
  if (v.is_string()) return v.str();
  rt_fail("{} must be a string, not '{}'", what, v.type_name());
}

int64_t length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return 0;
    case Value::Kind::String: return int64_t(utf8_length(v.str()));
    case Value::Kind::List: return int64_t(v.items().size());
    case Value::Kind::Dict: return int64_t(v.dict_data().items.size());
    default: rt_fail("object of type '{}' has no len()", v.type_name());
  }
}

// jinja2's attribute getter: "a.b.0" walks items, integer parts index lists.
Value attr_path(Renderer& r, Value v, const std::string& path) {
  size_t b = 0;
  while (true) {
    size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    bool digits = !part.empty() && part.size() < 18 && std::all_of(part.begin(), part.end(), ::isdigit);
    v = get_item(r, v, digits ? Value::integer(std::stoll(part)) : Value::string(part));
    if (e == std::string::npos) return v;
    b = e + 1;
  }
}

// Sort key comparison with jinja2's default case-insensitive string handling.
bool key_less(const Value& a, const Value& b, bool case_sensitive) {
  if (!case_sensitive && a.is_string() && b.is_string()) return py_lower(a.str()) < py_lower(b.str());
  return less(a, b);
}

Value select_items(Renderer& r, const Value& seq, CallArgs& a, bool by_attr, bool keep_if) {
  ValueList out;
  size_t first_test_arg = by_attr ? 1 : 0;
  if (by_attr && a.args.empty()) rt_fail("selectattr/rejectattr need an attribute name");
  std::string attr = by_attr ? as_string(a.args[0], "attribute") : std::string();
  bool has_test = a.args.size() > first_test_arg;
  std::string test_name = has_test ? as_string(a.args[first_test_arg], "test name") : std::string();
  CallArgs test_args;
  for (size_t i = first_test_arg + 1; i < a.args.size(); ++i) test_args.args.push_back(a.args[i]);
  test_args.kwargs = a.kwargs;
  for (const auto& item : iterate(seq)) {
    r.step();
    Value subject = by_attr ? attr_path(r, item, attr) : item;
    CallArgs ta = test_args;
    bool ok = has_test ? r.test(test_name, subject, ta) : subject.truthy();
    if (ok == keep_if) out.push_back(item);
  }
  return Value::list(std::move(out));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

bool parse_python_float(const std::string& s, double* out) {
  std::string t = py_strip(s, nullptr, true, true);
  std::string clean;
  for (char c : t)
    if (c != '_') clean += c;
  if (clean.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size()) return false;
  // strtod also takes hex floats, which Python's float() does not.
  return clean.find_first_of("xX") == std::string::npos;
}

bool parse_python_int(const std::string& s, int64_t base, int64_t* out) {
  std::string t = py_strip(s, nullptr, true, true);
  if (t.empty() || base < 2 || base > 36) return false;
  size_t i = 0;
  bool neg = false;
  if (t[i] == '+' || t[i] == '-') neg = t[i++] == '-';
  if (i >= t.size()) return false;
  int64_t v = 0;
  for (; i < t.size(); ++i) {
    char c = t[i];
    if (c == '_') continue;
    int d = c >= '0' && c <= '9' ? c - '0' : std::isalpha(static_cast<unsigned char>(c)) ? std::tolower(c) - 'a' + 10 : 99;
    if (d >= base) return false;
    if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, d, &v)) return false;
  }
  *out = neg ? -v : v;
  return true;
}

Value do_round(const Value& v, int64_t precision, const std::string& method) {
  if (!v.is_number()) rt_fail("round filter needs a number, not '{}'", v.type_name());
  if (precision < -30 || precision > 30) rt_fail("round precision out of range");
  double scale = std::pow(10.0, double(precision));
  if (method == "common") {
    if (!v.is_float() && precision >= 0) return Value::integer(v.as_int());
    return Value::number(std::nearbyint(v.as_double() * scale) / scale);  // ties to even, as Python
  }
  if (method == "ceil") return Value::number(std::ceil(v.as_double() * scale) / scale);
  if (method == "floor") return Value::number(std::floor(v.as_double() * scale) / scale);
  rt_fail("round method must be 'common', 'ceil' or 'floor'");
}

std::string indent_text(const std::string& s0, const std::string& ind, bool first, bool blank) {
  std::string s = s0 + "\n";  // as jinja2 does, so splitlines keeps a trailing empty line
  std::vector<std::string> lines = py_splitlines(s);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + ind : std::string()) + lines[i];
  } else {
    rv = lines.empty() ? std::string() : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) rv += "\n" + (lines[i].empty() ? std::string() : ind + lines[i]);
  }
  if (first) rv = ind + rv;
  return rv;
}

}  // namespace

Value apply_filter(Renderer& r, const std::string& name, const Value& v, CallArgs& a) {
  ArgReader ar(a, "filter '" + name + "'");
  if (name == "trim") {
    Value chars = ar.get(0, "chars");
    ar.done(1);
    return Value::string(py_strip(to_str(v), chars.is_string() ? &chars.str() : nullptr, true, true));
  }
  if (name == "tojson") {
    JsonOptions o;
    o.ensure_ascii = ar.get(0, "ensure_ascii", Value::boolean(false)).truthy();
    Value indent = ar.get(1, "indent", Value::none());
    Value seps = ar.get(2, "separators", Value::none());
    o.sort_keys = ar.get(3, "sort_keys", Value::boolean(false)).truthy();
    ar.done(4);
    if (indent.is_string()) {
      o.has_indent = true;
      o.indent = indent.str();
    } else if (!indent.is_none() && !indent.is_undefined()) {
      int64_t n = as_integer(indent, "tojson indent");
      o.has_indent = true;
      o.indent = std::string(size_t(std::clamp<int64_t>(n, 0, 64)), ' ');
    }
    if (o.has_indent) o.item_sep = ",";
    if (!seps.is_none() && !seps.is_undefined()) {
      if (!seps.is_list() || seps.items().size() != 2 || !seps.items()[0].is_string() || !seps.items()[1].is_string())
        rt_fail("tojson separators must be a pair of strings");
      o.item_sep = seps.items()[0].str();
      o.key_sep = seps.items()[1].str();
    }
    std::string out = to_json(v, o);
    r.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (name == "length" || name == "count") {
    ar.done(0);
    return Value::integer(length_of(v));
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title" || name == "string" ||
      name == "safe" || name == "escape" || name == "e" || name == "wordcount") {
    ar.done(0);
    if (name == "safe" && !v.is_undefined()) return v;
    std::string s = to_str(v);
    if (name == "upper") return Value::string(py_upper(s));
    if (name == "lower") return Value::string(py_lower(s));
    if (name == "capitalize") return Value::string(py_capitalize(s));
    if (name == "escape" || name == "e") return Value::string(html_escape(s));
    if (name == "wordcount") return Value::integer(int64_t(py_split(s, nullptr, -1, false).size()));
    if (name == "title") {
      // jinja2 capitalizes each piece that follows whitespace, '-', '(', '{', '[' or '<'.
      std::u32string u = utf8_decode(s), out;
      bool word_start = true;
      for (char32_t c : u) {
        bool sep = is_py_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
        std::string one = utf8_encode(std::u32string_view(&c, 1));
        out += utf8_decode(sep ? one : word_start ? py_upper(one) : py_lower(one));
        word_start = sep;
      }
      return Value::string(utf8_encode(out));
    }
    return Value::string(s);
  }
  if (name == "default" || name == "d") {
    Value def = ar.get(0, "default_value", Value::string(""));
    bool boolean = ar.get(1, "boolean", Value::boolean(false)).truthy();
    ar.done(2);
    if (v.is_undefined() || (boolean && !v.truthy())) return def;
    return v;
  }
  if (name == "join") {
    Value sep = ar.get(0, "d", Value::string(""));
    Value attr = ar.get(1, "attribute", Value::none());
    ar.done(2);
    std::string s = to_str(sep), out;
    bool first = true;
    for (const auto& item : iterate(v)) {
      if (!first) out += s;
      first = false;
      out += to_str(attr.is_none() ? item : attr_path(r, item, to_str(attr)));
      r.check_size(out.size());
    }
    return Value::string(std::move(out));
  }
  if (name == "first" || name == "last") {
    ar.done(0);
    ValueList items = iterate(v);
    if (items.empty()) return Value::undefined(fmt::format("No {} item, sequence was empty.", name));
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") {
    ar.done(0);
    return Value::list(iterate(v));
  }
  if (name == "int") {
    Value def = ar.get(0, "default", Value::integer(0));
    int64_t base = as_integer(ar.get(1, "base", Value::integer(10)), "base");
    ar.done(2);
    if (v.is_int() || v.is_bool()) return Value::integer(v.as_int());
    if (v.is_float()) {
      double d = v.as_double();
      if (!std::isfinite(d) || std::fabs(d) >= 9.2e18) return def;
      return Value::integer(int64_t(d));
    }
    if (v.is_string()) {
      int64_t i;
      if (parse_python_int(v.str(), base, &i)) return Value::integer(i);
      double d;
      if (parse_python_float(v.str(), &d) && std::isfinite(d) && std::fabs(d) < 9.2e18) return Value::integer(int64_t(d));
    }
    return def;
  }
  if (name == "float") {
    Value def = ar.get(0, "default", Value::number(0.0));
    ar.done(1);
    if (v.is_number()) return Value::number(v.as_double());
    double d;
    if (v.is_string() && parse_python_float(v.str(), &d)) return Value::number(d);
    return def;
  }
  if (name == "replace") {
    Value old = ar.get(0, "old"), neu = ar.get(1, "new"), count = ar.get(2, "count", Value::none());
    ar.done(3);
    int64_t n = count.is_none() ? -1 : as_integer(count, "count");
    return Value::string(py_replace(to_str(v), to_str(old), to_str(neu), n, r.options().max_output_bytes));
  }
  if (name == "items") {
    ar.done(0);
    if (v.is_undefined()) return Value::list({});
    if (!v.is_dict()) rt_fail("can only get item pairs from a mapping, not '{}'", v.type_name());
    ValueList out;
    for (const auto& [k, e] : v.dict_data().items) out.push_back(Value::list({Value::string(k), e}));
    return Value::list(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr") return select_items(r, v, a, true, name == "selectattr");
  if (name == "select" || name == "reject") return select_items(r, v, a, false, name == "select");
  if (name == "map") {
    ValueList out;
    if (ar.has(99, "attribute")) {
      Value attr = ar.get(99, "attribute");
      Value def = ar.get(99, "default");
      ar.done(0);
      for (const auto& item : iterate(v)) {
        Value x = attr_path(r, item, to_str(attr));
        out.push_back(x.is_undefined() && !def.is_undefined() ? def : x);
      }
      return Value::list(std::move(out));
    }
    if (a.args.empty()) rt_fail("map filter needs a filter name or attribute=");
    std::string fname = as_string(a.args[0], "filter name");
    CallArgs rest;
    rest.args.assign(a.args.begin() + 1, a.args.end());
    rest.kwargs = a.kwargs;
    for (const auto& item : iterate(v)) {
      r.step();
      CallArgs ca = rest;
      out.push_back(r.filter(fname, item, ca));
    }
    return Value::list(std::move(out));
  }
  if (name == "indent") {
    Value width = ar.get(0, "width", Value::integer(4));
    bool first = ar.get(1, "first", Value::boolean(false)).truthy();
    bool blank = ar.get(2, "blank", Value::boolean(false)).truthy();
    ar.done(3);
    std::string ind = width.is_string() ? width.str()
                                        : std::string(size_t(std::clamp<int64_t>(as_integer(width, "width"), 0, 256)), ' ');
    std::string out = indent_text(to_str(v), ind, first, blank);
    r.check_size(out.size());
    return Value::string(std::move(out));
  }
  if (name == "abs") {
    ar.done(0);
    if (v.is_float()) return Value::number(std::fabs(v.as_double()));
    if (v.is_number()) {
      if (v.as_int() == INT64_MIN) rt_fail("integer overflow");
      return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    rt_fail("bad operand type for abs(): '{}'", v.type_name());
  }
  if (name == "round") {
    int64_t precision = as_integer(ar.get(0, "precision", Value::integer(0)), "precision");
    std::string method = to_str(ar.get(1, "method", Value::string("common")));
    ar.done(2);
    return do_round(v, precision, method);
  }
  if (name == "unique" || name == "sort" || name == "min" || name == "max") {
    bool reverse = name == "sort" ? ar.get(0, "reverse", Value::boolean(false)).truthy() : false;
    size_t cs_pos = name == "sort" ? 1 : 0;
    bool cs = ar.get(cs_pos, "case_sensitive", Value::boolean(false)).truthy();
    Value attr = ar.get(cs_pos + 1, "attribute", Value::none());
    ar.done(cs_pos + 2);
    ValueList items = iterate(v);
    auto key = [&](const Value& x) { return attr.is_none() ? x : attr_path(r, x, to_str(attr)); };
    if (name == "unique") {
      ValueList out, seen;
      for (const auto& x : items) {
        Value k = key(x);
        if (!cs && k.is_string()) k = Value::string(py_lower(k.str()));
        bool dup = false;
        for (const auto& s : seen) dup = dup || equals(s, k);
        if (!dup) {
          seen.push_back(k);
          out.push_back(x);
        }
      }
      return Value::list(std::move(out));
    }
    if (name == "min" || name == "max") {
      if (items.empty()) return Value::undefined(fmt::format("No {} item, sequence was empty.", name));
      size_t best = 0;
      for (size_t i = 1; i < items.size(); ++i) {
        bool better = name == "min" ? key_less(key(items[i]), key(items[best]), cs)
                                    : key_less(key(items[best]), key(items[i]), cs);
        if (better) best = i;
      }
      return items[best];
    }
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      return reverse ? key_less(key(y), key(x), cs) : key_less(key(x), key(y), cs);
    });
    return Value::list(std::move(items));
  }
  if (name == "dictsort") {
    bool cs = ar.get(0, "case_sensitive", Value::boolean(false)).truthy();
    std::string by = to_str(ar.get(1, "by", Value::string("key")));
    bool reverse = ar.get(2, "reverse", Value::boolean(false)).truthy();
    ar.done(3);
    if (!v.is_dict()) rt_fail("dictsort needs a mapping, not '{}'", v.type_name());
    if (by != "key" && by != "value") rt_fail("dictsort: you can only sort by either 'key' or 'value'");
    ValueList pairs;
    for (const auto& [k, e] : v.dict_data().items) pairs.push_back(Value::list({Value::string(k), e}));
    size_t pos = by == "key" ? 0 : 1;
    std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
      const Value &p = x.items()[pos], &q = y.items()[pos];
      return reverse ? key_less(q, p, cs) : key_less(p, q, cs);
    });
    return Value::list(std::move(pairs));
  }
  if (name == "reverse") {
    ar.done(0);
    if (v.is_string()) {
      std::u32string u = utf8_decode(v.str());
      std::reverse(u.begin(), u.end());
      return Value::string(utf8_encode(u));
    }
    ValueList items = iterate(v);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "sum") {
    Value attr = ar.get(0, "attribute", Value::none());
    Value total = ar.get(1, "start", Value::integer(0));
    ar.done(2);
    for (const auto& x : iterate(v)) total = binary_op(r, "+", total, attr.is_none() ? x : attr_path(r, x, to_str(attr)));
    return total;
  }
  if (name == "attr") {
    Value n = ar.get(0, "name");
    ar.done(1);
    return get_attr(r, v, as_string(n, "attribute name"));
  }
  if (name == "center") {
    int64_t width = as_integer(ar.get(0, "width", Value::integer(80)), "width");
    ar.done(1);
    std::u32string u = utf8_decode(to_str(v));
    int64_t pad = std::clamp<int64_t>(width, 0, 4096) - int64_t(u.size());
    if (pad <= 0) return Value::string(to_str(v));
    // Python's str.center puts the extra space on the right when the text length is even... as
    // CPython: left = pad / 2 + (pad & width & 1).
    int64_t left = pad / 2 + (pad & width & 1);
    return Value::string(std::string(size_t(left), ' ') + to_str(v) + std::string(size_t(pad - left), ' '));
  }
  rt_fail("unknown filter '{}'", name);
}

bool apply_test(Renderer& r, const std::string& name, const Value& v, CallArgs& a) {
  ArgReader ar(a, "test '" + name + "'");
  auto no_args = [&] { ar.done(0); };
  if (name == "defined") return no_args(), !v.is_undefined();
  if (name == "undefined") return no_args(), v.is_undefined();
  if (name == "none") return no_args(), v.is_none();
  if (name == "boolean") return no_args(), v.is_bool();
  if (name == "true") return no_args(), v.is_bool() && v.as_bool();
  if (name == "false") return no_args(), v.is_bool() && !v.as_bool();
  if (name == "integer") return no_args(), v.is_int();
  if (name == "float") return no_args(), v.is_float();
  if (name == "number") return no_args(), v.is_number();
  if (name == "string") return no_args(), v.is_string();
  if (name == "mapping") return no_args(), v.is_dict();
  if (name == "iterable") return no_args(), v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (name == "sequence") return no_args(), v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  if (name == "callable") return no_args(), v.is_callable();
  if (name == "escaped") return no_args(), false;
  if (name == "lower" || name == "upper") {
    no_args();
    if (!v.is_string()) return false;
    return name == "lower" ? py_lower(v.str()) == v.str() : py_upper(v.str()) == v.str();
  }
  if (name == "odd" || name == "even") {
    no_args();
    int64_t i = as_integer(v, "odd/even test value");
    return (i % 2 != 0) == (name == "odd");
  }
  if (name == "divisibleby") {
    Value n = ar.get(0, "num");
    ar.done(1);
    int64_t d = as_integer(n, "divisibleby argument");
    if (d == 0) rt_fail("integer division or modulo by zero");
    if (d == -1) return true;
    return as_integer(v, "divisibleby test value") % d == 0;
  }
  static const char* cmp_names[][3] = {{"eq", "equalto", "=="}, {"ne", "!=", "!="}, {"lt", "lessthan", "<"},
                                       {"le", "<=", "<="},       {"gt", "greaterthan", ">"}, {"ge", ">=", ">="}};
  for (int k = 0; k < 6; ++k) {
    if (name != cmp_names[k][0] && name != cmp_names[k][1] && name != cmp_names[k][2]) continue;
    Value o = ar.get(0, "other");
    ar.done(1);
    switch (k) {
      case 0: return equals(v, o);
      case 1: return !equals(v, o);
      case 2: return less(v, o);
      case 3: return less(v, o) || equals(v, o);
      case 4: return less(o, v);
      default: return less(o, v) || equals(v, o);
    }
  }
  if (name == "sameas") {
    Value o = ar.get(0, "other");
    ar.done(1);
    if (v.kind() != o.kind()) return false;
    if (v.is_none() || v.is_undefined()) return true;
    if (v.is_bool()) return v.as_bool() == o.as_bool();
    return equals(v, o) && (v.is_int() || v.is_float());
  }
  if (name == "in") {
    Value seq = ar.get(0, "seq");
    ar.done(1);
    return contains(seq, v);
  }
  (void)r;
  rt_fail("unknown test '{}'", name);
}

void add_globals(Frame& root) {
  root.vars["range"] = Value::function("range", [](Renderer&, CallArgs& a) {
    if (!a.kwargs.empty()) rt_fail("range() takes no keyword arguments");
    if (a.args.empty() || a.args.size() > 3) rt_fail("range expected 1 to 3 arguments, got {}", a.args.size());
    int64_t start = 0, stop, step = 1;
    if (a.args.size() == 1) {
      stop = as_integer(a.args[0], "range() argument");
    } else {
      start = as_integer(a.args[0], "range() argument");
      stop = as_integer(a.args[1], "range() argument");
      if (a.args.size() == 3) step = as_integer(a.args[2], "range() argument");
    }
    if (step == 0) rt_fail("range() arg 3 must not be zero");
    ValueList out;
    for (int64_t i = start; step > 0 ? i < stop : i > stop;) {
      if (int64_t(out.size()) >= kMaxRange)
        rt_fail("Range too big. The sandbox blocks ranges larger than MAX_RANGE ({}).", kMaxRange);
      out.push_back(Value::integer(i));
      if (__builtin_add_overflow(i, step, &i)) break;
    }
    return Value::list(std::move(out));
  });
  auto kw_object = [](CallArgs& a, const char* what) {
    std::vector<std::pair<std::string, Value>> items;
    for (const auto& p : a.args) {
      if (!p.is_dict()) rt_fail("{}() positional arguments must be mappings", what);
      for (const auto& kv : p.dict_data().items) items.push_back(kv);
    }
    for (auto& kv : a.kwargs) items.push_back(kv);
    return items;
  };
  root.vars["namespace"] = Value::function(
      "namespace", [kw_object](Renderer&, CallArgs& a) { return Value::make_namespace(kw_object(a, "namespace")); });
  root.vars["dict"] =
      Value::function("dict", [kw_object](Renderer&, CallArgs& a) { return Value::dict(kw_object(a, "dict")); });
  root.vars["raise_exception"] = Value::function("raise_exception", [](Renderer&, CallArgs& a) -> Value {
    // The template's own message, unchanged, as transformers raises TemplateError(message).
    throw Error(a.args.empty() ? std::string() : to_str(a.args[0]));
  });
  root.vars["strftime_now"] = Value::function("strftime_now", [](Renderer&, CallArgs& a) {
    ArgReader ar(a, "strftime_now()");
    Value f = ar.get(0, "format");
    ar.done(1);
    if (!f.is_string()) rt_fail("strftime_now() format must be a string");
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    localtime_r(&t, &tm);  // transformers uses datetime.now(): local time
    char buf[512];
    size_t n = f.str().size() < 200 ? std::strftime(buf, sizeof buf, f.str().c_str(), &tm) : 0;
    return Value::string(std::string(buf, n));
  });
}

}  // namespace fathom::jinja
