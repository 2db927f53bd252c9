// The request-head parser of the HTTP server, kept apart from the sockets so that it can be
// tested and fuzzed on plain buffers. Follows RFC 9112 (message syntax) and RFC 9110.
#include <charconv>

#include <fmt/format.h>

#include "server/http.h"

namespace fathom::http {

namespace {

constexpr size_t npos = std::string_view::npos;

// tchar (RFC 9110 5.6.2): the characters of methods and field names.
bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(char(c)) != npos;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

char lower_char(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower_char(a[i]) != lower_char(b[i])) return false;
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whether a comma-separated list (Connection) holds `token`, case-insensitively.
bool list_has(std::string_view list, std::string_view token) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// The next line of `buf` from `pos`, without its LF and an optional CR before it; npos in
// `next` when no LF has arrived yet.
std::string_view next_line(std::string_view buf, size_t pos, size_t& next) {
  const size_t lf = buf.find('\n', pos);
  if (lf == npos) {
    next = npos;
    return {};
  }
  next = lf + 1;
  std::string_view line = buf.substr(pos, lf - pos);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

HeadParse invalid(int status, std::string message) {
  HeadParse r;
  r.kind = HeadParse::Invalid;
  r.status = status;
  r.message = std::move(message);
  return r;
}

// Request line: method SP request-target SP HTTP-version (RFC 9112 3).
bool parse_request_line(std::string_view line, RequestHead& h, HeadParse& err) {
  const size_t a = line.find(' ');
  const size_t b = a == npos ? npos : line.find(' ', a + 1);
  if (b == npos || line.find(' ', b + 1) != npos) return err = invalid(400, "malformed request line"), false;
  const std::string_view method = line.substr(0, a), target = line.substr(a + 1, b - a - 1),
                         version = line.substr(b + 1);
  if (!is_token(method)) return err = invalid(400, "malformed request method"), false;
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9')
    return err = invalid(400, "malformed HTTP version"), false;
  if (version[5] != '1') return err = invalid(505, "only HTTP/1.x is supported"), false;
  // A higher minor version is answered as the highest one implemented (RFC 9110 2.5).
  h.http11 = version[7] != '0';
  if (target.empty()) return err = invalid(400, "empty request target"), false;
  for (unsigned char c : target)
    if (c <= 0x20 || c >= 0x7f || c == '#') return err = invalid(400, "malformed request target"), false;
  std::string_view path_query = target;
  if (target.front() != '/') {
    if (target == "*" && method == "OPTIONS") {
      path_query = target;
    } else {
      // absolute-form, which servers must accept (RFC 9112 3.2.2): drop scheme and authority.
      const size_t sep = target.find("://");
      if (sep == npos || !(iequals(target.substr(0, sep), "http") || iequals(target.substr(0, sep), "https")))
        return err = invalid(400, "malformed request target"), false;
      const std::string_view rest = target.substr(sep + 3);
      const size_t path_at = rest.find_first_of("/?");
      if (path_at == 0) return err = invalid(400, "malformed request target"), false;
      path_query = path_at == npos ? std::string_view("/") : rest.substr(path_at);
      if (path_query.front() == '?') h.req.path = "/";
    }
  }
  h.req.method = std::string(method);
  const size_t q = path_query.find('?');
  if (q != 0) h.req.path = std::string(path_query.substr(0, q));
  h.req.query = q == npos ? std::string() : std::string(path_query.substr(q + 1));
  return true;
}

// field-line: field-name ":" OWS field-value OWS (RFC 9112 5).
bool parse_field_line(std::string_view line, RequestHead& h, HeadParse& err) {
  const size_t colon = line.find(':');
  // No whitespace before the colon (5.1) and no obs-fold continuation lines (5.2).
  if (colon == npos || !is_token(line.substr(0, colon))) return err = invalid(400, "malformed header field"), false;
  const std::string_view value = trim_ows(line.substr(colon + 1));
  for (unsigned char c : value)
    if ((c < 0x20 && c != '\t') || c == 0x7f) return err = invalid(400, "control character in a header field"), false;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = lower_char(c);
  auto [it, fresh] = h.req.headers.emplace(name, std::string(value));
  if (!fresh) {
    if (name == "host") return err = invalid(400, "more than one Host header"), false;
    // Repeated fields combine into one list (RFC 9110 5.3).
    it->second.append(", ").append(value);
  }
  return true;
}

// Content-Length = 1*DIGIT; a list of identical values is the same length (RFC 9110 8.6).
// Returns false when malformed; `huge` when it does not fit a size_t.
bool parse_content_length(std::string_view v, size_t& len, bool& huge) {
  bool first = true;
  huge = false;
  for (;;) {
    const size_t comma = v.find(',');
    const std::string_view item = trim_ows(v.substr(0, comma));
    if (item.empty()) return false;
    for (char c : item)
      if (c < '0' || c > '9') return false;
    size_t x = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), x);
    const bool over = ec == std::errc::result_out_of_range;
    if (!over && (ec != std::errc() || p != item.data() + item.size())) return false;
    if (first) {
      len = x;
      huge = over;
      first = false;
    } else if (over != huge || (!over && x != len)) {
      return false;
    } else if (over) {
      return false;  // two unrepresentable lengths cannot be compared: refuse
    }
    if (comma == npos) return true;
    v.remove_prefix(comma + 1);
  }
}

}  // namespace

HeadParse parse_request_head(std::string_view buf, size_t max_header, size_t max_body) {
  // Empty lines before the request line are ignored (RFC 9112 2.2).
  size_t start = 0, next = 0;
  for (;;) {
    const std::string_view line = next_line(buf, start, next);
    if (next == npos) break;
    if (!line.empty()) break;
    start = next;
  }
  // The head ends at the first empty line after the request line.
  size_t end = npos;
  for (size_t pos = start;;) {
    const std::string_view line = next_line(buf, pos, next);
    if (next == npos) break;
    if (line.empty() && pos != start) {
      end = next;
      break;
    }
    pos = next;
  }
  if (end == npos ? buf.size() > max_header : end > max_header) return invalid(431, "request header too large");
  if (end == npos) return {};

  HeadParse r;
  RequestHead& h = r.head;
  h.size = end;
  HeadParse err;
  size_t pos = start;
  std::string_view line = next_line(buf, pos, next);
  for (;;) {
    // A CR is only allowed right before the LF (RFC 9112 2.2).
    if (line.find('\r') != npos) return invalid(400, "bare CR in the request head");
    if (pos == start ? !parse_request_line(line, h, err) : !parse_field_line(line, h, err)) return err;
    pos = next;
    line = next_line(buf, pos, next);
    if (line.empty()) break;
  }

  // Framing (RFC 9112 6.3): chunked request bodies are not implemented; Content-Length must be valid.
  if (h.req.headers.count("transfer-encoding"))
    return invalid(411, "chunked request bodies are not supported; send Content-Length");
  if (auto it = h.req.headers.find("content-length"); it != h.req.headers.end()) {
    bool huge = false;
    if (!parse_content_length(it->second, h.content_length, huge)) return invalid(400, "bad Content-Length");
    if (huge) return invalid(413, fmt::format("request body of {} bytes exceeds the limit of {} bytes",
                                              trim_ows(it->second), max_body));
  }
  if (h.content_length > max_body)
    return invalid(413, fmt::format("request body of {} bytes exceeds the limit of {} bytes", h.content_length, max_body));

  const std::string& conn = h.req.header("connection");
  h.keep_alive = !list_has(conn, "close") && (h.http11 || list_has(conn, "keep-alive"));
  // HTTP/1.0 clients never expect a 100 (RFC 9110 10.1.1).
  h.expect_continue = h.http11 && iequals(h.req.header("expect"), "100-continue");
  r.kind = HeadParse::Complete;
  return r;
}

}  // namespace fathom::http
