// libFuzzer target: the HTTP/1.1 request-head parser of `fathom serve`. The first two bytes
// pick the header and body limits; the rest is a connection's byte stream, parsed as the
// server does: head, then Content-Length bytes of body, then the next pipelined request.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/http.h"

namespace {

using fathom::http::HeadParse;
using fathom::http::parse_request_head;

bool is_tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || std::string_view("!#$%&'*+-.^_`|~").find(char(c)) != std::string_view::npos;
}

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// Invariants of one accepted head.
void check_head(const HeadParse& p, std::string_view buf, size_t max_header, size_t max_body) {
  const auto& h = p.head;
  check(h.size > 0 && h.size <= buf.size() && h.size <= max_header);
  check(h.content_length <= max_body);
  check(!h.req.method.empty() && h.req.body.empty());
  for (char c : h.req.method) check(c != ' ' && c != '\r' && c != '\n');
  check(!h.req.path.empty() && (h.req.path.front() == '/' || h.req.path == "*"));
  for (unsigned char c : h.req.path) check(c > 0x20 && c < 0x7f && c != '?');
  for (const auto& [name, value] : h.req.headers) {
    check(!name.empty());
    for (unsigned char c : name) check(is_tchar(c));  // lower-cased tokens
    for (unsigned char c : value) check(c != '\r' && c != '\n' && c != 0);
  }
  check(!h.req.headers.count("transfer-encoding"));
  check(!h.expect_continue || h.http11);
  // The head is complete on its own: the bytes after it do not change the result...
  const HeadParse alone = parse_request_head(buf.substr(0, h.size), max_header, max_body);
  check(alone.kind == HeadParse::Complete && alone.head.size == h.size &&
        alone.head.req.headers == h.req.headers && alone.head.req.path == h.req.path &&
        alone.head.req.query == h.req.query && alone.head.keep_alive == h.keep_alive &&
        alone.head.content_length == h.content_length);
  // ...and no shorter prefix is a complete head.
  const HeadParse shorter = parse_request_head(buf.substr(0, h.size - 1), max_header, max_body);
  check(shorter.kind == HeadParse::Incomplete);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t max_header = 16 + size_t(data[0]) * 64;  // up to about 16 KiB
  const size_t max_body = size_t(data[1]) * 4;
  std::string_view buf(reinterpret_cast<const char*>(data + 2), size - 2);
  for (int requests = 0; requests < 64; ++requests) {
    const HeadParse p = parse_request_head(buf, max_header, max_body);
    if (p.kind == HeadParse::Incomplete) {
      check(buf.size() <= max_header);
      break;
    }
    if (p.kind == HeadParse::Invalid) {
      check(p.status == 400 || p.status == 411 || p.status == 413 || p.status == 431 || p.status == 505);
      check(!p.message.empty());
      for (char c : p.message) check(c != '"' && c != '\\');  // goes into a JSON string as is
      break;
    }
    check_head(p, buf, max_header, max_body);
    // The body, then the next pipelined request.
    if (buf.size() - p.head.size < p.head.content_length) break;
    buf.remove_prefix(p.head.size + p.head.content_length);
  }
  return 0;
}
