#pragma once
// Python str semantics on UTF-8 strings. Case mapping covers ASCII, Latin-1, Greek and
// Cyrillic; other scripts are left unchanged.
#include <string>
#include <string_view>
#include <vector>

#include "template/value.h"

namespace fathom::jinja {

class Renderer;

size_t utf8_length(std::string_view s);
std::string py_strip(const std::string& s, const std::string* chars, bool left, bool right);
// sep == nullptr: split on runs of whitespace. maxsplit < 0: no limit.
std::vector<std::string> py_split(const std::string& s, const std::string* sep, int64_t maxsplit, bool from_right);
std::vector<std::string> py_splitlines(const std::string& s);
std::string py_upper(const std::string& s);
std::string py_lower(const std::string& s);
std::string py_title(const std::string& s);       // str.title()
std::string py_capitalize(const std::string& s);  // str.capitalize()
std::string py_swapcase(const std::string& s);
std::string py_replace(const std::string& s, const std::string& old, const std::string& neu, int64_t count,
                       size_t max_bytes);
int64_t py_count(const std::string& s, const std::string& sub);
bool py_is(const std::string& s, const std::string& which);  // isdigit, isalpha, ...
// str.format with {} / {0} / {name} fields and !s / !r conversions.
std::string py_format(Renderer& r, const std::string& fmt, CallArgs& args);

}  // namespace fathom::jinja
