#include "template/strings.h"

#include <algorithm>

#include "template/errors.h"
#include "template/eval.h"

namespace fathom::jinja {

namespace {

char32_t to_upper(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
  if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
  if (c >= 0x430 && c <= 0x44F) return c - 32;
  if (c >= 0x450 && c <= 0x45F) return c - 80;
  return c;
}

char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c >= 0xC0 && c <= 0xDE && c != 0xD7) return c + 32;
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
  if (c >= 0x410 && c <= 0x42F) return c + 32;
  if (c >= 0x400 && c <= 0x40F) return c + 80;
  return c;
}

bool is_upper(char32_t c) { return to_lower(c) != c; }
bool is_lower(char32_t c) { return to_upper(c) != c; }
bool is_cased(char32_t c) { return is_upper(c) || is_lower(c); }
bool is_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_alpha(char32_t c) { return is_cased(c) || (c >= 0x80 && !is_py_space(c) && c > 0xBF); }

std::string map_chars(const std::string& s, char32_t (*f)(char32_t)) {
  std::u32string u = utf8_decode(s);
  for (auto& c : u) c = f(c);
  return utf8_encode(u);
}

}  // namespace

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (char c : s)
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  return n;
}

std::string py_strip(const std::string& s, const std::string* chars, bool left, bool right) {
  std::u32string u = utf8_decode(s);
  std::u32string set = chars ? utf8_decode(*chars) : std::u32string();
  auto strip = [&](char32_t c) { return chars ? set.find(c) != std::u32string::npos : is_py_space(c); };
  size_t b = 0, e = u.size();
  if (left)
    while (b < e && strip(u[b])) ++b;
  if (right)
    while (e > b && strip(u[e - 1])) --e;
  return utf8_encode(std::u32string_view(u).substr(b, e - b));
}

std::vector<std::string> py_split(const std::string& s, const std::string* sep, int64_t maxsplit, bool from_right) {
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) rt_fail("empty separator");
    if (!from_right) {
      size_t pos = 0;
      while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
        size_t f = s.find(*sep, pos);
        if (f == std::string::npos) break;
        out.push_back(s.substr(pos, f - pos));
        pos = f + sep->size();
      }
      out.push_back(s.substr(pos));
    } else {
      size_t end = s.size();
      while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
        if (end < sep->size()) break;
        size_t f = s.rfind(*sep, end - sep->size());
        if (f == std::string::npos) break;
        out.push_back(s.substr(f + sep->size(), end - f - sep->size()));
        end = f;
      }
      out.push_back(s.substr(0, end));
      std::reverse(out.begin(), out.end());
    }
    return out;
  }
  std::u32string u = utf8_decode(s);
  if (!from_right) {
    size_t i = 0;
    while (true) {
      while (i < u.size() && is_py_space(u[i])) ++i;
      if (i >= u.size()) break;
      if (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) {
        size_t e = u.size();
        while (e > i && is_py_space(u[e - 1])) --e;
        out.push_back(utf8_encode(std::u32string_view(u).substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < u.size() && !is_py_space(u[j])) ++j;
      out.push_back(utf8_encode(std::u32string_view(u).substr(i, j - i)));
      i = j;
    }
  } else {
    size_t i = u.size();
    while (true) {
      while (i > 0 && is_py_space(u[i - 1])) --i;
      if (i == 0) break;
      if (maxsplit >= 0 && int64_t(out.size()) >= maxsplit) {
        size_t b = 0;
        while (b < i && is_py_space(u[b])) ++b;
        out.push_back(utf8_encode(std::u32string_view(u).substr(b, i - b)));
        break;
      }
      size_t j = i;
      while (j > 0 && !is_py_space(u[j - 1])) --j;
      out.push_back(utf8_encode(std::u32string_view(u).substr(j, i - j)));
      i = j;
    }
    std::reverse(out.begin(), out.end());
  }
  return out;
}

std::vector<std::string> py_splitlines(const std::string& s) {
  std::u32string u = utf8_decode(s);
  std::vector<std::string> out;
  size_t b = 0;
  for (size_t i = 0; i < u.size(); ++i) {
    char32_t c = u[i];
    bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || (c >= 0x1C && c <= 0x1E) || c == 0x85 ||
               c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    out.push_back(utf8_encode(std::u32string_view(u).substr(b, i - b)));
    if (c == '\r' && i + 1 < u.size() && u[i + 1] == '\n') ++i;
    b = i + 1;
  }
  if (b < u.size()) out.push_back(utf8_encode(std::u32string_view(u).substr(b)));
  return out;
}

std::string py_upper(const std::string& s) { return map_chars(s, to_upper); }
std::string py_lower(const std::string& s) { return map_chars(s, to_lower); }
std::string py_swapcase(const std::string& s) {
  return map_chars(s, [](char32_t c) { return is_upper(c) ? to_lower(c) : to_upper(c); });
}

std::string py_title(const std::string& s) {
  std::u32string u = utf8_decode(s);
  bool prev_cased = false;
  for (auto& c : u) {
    if (is_cased(c)) {
      c = prev_cased ? to_lower(c) : to_upper(c);
      prev_cased = true;
    } else {
      prev_cased = false;
    }
  }
  return utf8_encode(u);
}

std::string py_capitalize(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? to_upper(u[i]) : to_lower(u[i]);
  return utf8_encode(u);
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& neu, int64_t count,
                       size_t max_bytes) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {  // Python inserts `neu` between every character and at both ends
    std::u32string u = utf8_decode(s);
    for (size_t i = 0; i <= u.size(); ++i) {
      if (count < 0 || done < count) {
        out += neu;
        ++done;
      }
      if (i < u.size()) out += utf8_encode(std::u32string_view(u).substr(i, 1));
      if (out.size() > max_bytes) rt_fail("string exceeds the limit of {} bytes", max_bytes);
    }
    return out;
  }
  size_t pos = 0;
  while (count < 0 || done < count) {
    size_t f = s.find(old, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += neu;
    pos = f + old.size();
    ++done;
    if (out.size() > max_bytes) rt_fail("string exceeds the limit of {} bytes", max_bytes);
  }
  out.append(s, pos, std::string::npos);
  return out;
}

int64_t py_count(const std::string& s, const std::string& sub) {
  if (sub.empty()) return int64_t(utf8_length(s)) + 1;
  int64_t n = 0;
  for (size_t f = s.find(sub); f != std::string::npos; f = s.find(sub, f + sub.size())) ++n;
  return n;
}

bool py_is(const std::string& s, const std::string& which) {
  std::u32string u = utf8_decode(s);
  if (u.empty()) return false;
  if (which == "isupper" || which == "islower") {
    bool any = false;
    for (char32_t c : u) {
      if (which == "isupper" ? is_lower(c) : is_upper(c)) return false;
      any = any || is_cased(c);
    }
    return any;
  }
  for (char32_t c : u) {
    bool ok = which == "isdigit" ? is_digit(c)
              : which == "isalpha" ? is_alpha(c)
              : which == "isspace" ? is_py_space(c)
                                   : (is_digit(c) || is_alpha(c));
    if (!ok) return false;
  }
  return true;
}

std::string py_format(Renderer& r, const std::string& f, CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < f.size(); ++i) {
    char c = f[i];
    if (c == '}') {
      if (i + 1 < f.size() && f[i + 1] == '}') ++i;
      else rt_fail("str.format(): single '}}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < f.size() && f[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t e = f.find('}', i);
    if (e == std::string::npos) rt_fail("str.format(): unmatched '{{' in format string");
    std::string field = f.substr(i + 1, e - i - 1);
    i = e;
    char conv = 's';
    size_t bang = field.find('!');
    if (field.find(':') != std::string::npos) rt_fail("str.format(): format specs are not supported");
    if (bang != std::string::npos) {
      if (bang + 2 != field.size() || (field[bang + 1] != 's' && field[bang + 1] != 'r'))
        rt_fail("str.format(): unsupported conversion in '{{{}}}'", field);
      conv = field[bang + 1];
      field.resize(bang);
    }
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index >= args.args.size()) rt_fail("str.format(): replacement index {} out of range", auto_index);
      v = &args.args[auto_index++];
    } else if (std::all_of(field.begin(), field.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) {
      size_t k = field.size() > 6 ? SIZE_MAX : std::stoul(field);
      if (k >= args.args.size()) rt_fail("str.format(): replacement index {} out of range", field);
      v = &args.args[k];
    } else {
      for (const auto& kv : args.kwargs)
        if (kv.first == field) v = &kv.second;
      if (!v) rt_fail("str.format(): no argument named '{}'", field);
    }
    out += conv == 'r' ? repr(*v) : to_str(*v);
    r.check_size(out.size());
  }
  return out;
}

}  // namespace fathom::jinja
