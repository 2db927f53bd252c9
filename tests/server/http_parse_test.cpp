// The request-head parser against RFC 9112 / RFC 9110: framing, request line, field syntax,
// persistence, and the server's own limits.
#include <gtest/gtest.h>

#include <string>

#include "server/http.h"

using fathom::http::HeadParse;
using fathom::http::parse_request_head;
using namespace std::string_literals;

namespace {

constexpr size_t kMaxHeader = 1024, kMaxBody = 1000;

HeadParse parse(std::string_view s) { return parse_request_head(s, kMaxHeader, kMaxBody); }

int status_of(std::string_view s) {
  const HeadParse p = parse(s);
  return p.kind == HeadParse::Invalid ? p.status : p.kind == HeadParse::Complete ? 0 : -1;
}

}  // namespace

TEST(HttpParse, SimpleGet) {
  const std::string s = "GET /v1/models?x=1&y HTTP/1.1\r\nHost: a\r\nAccept:  */*  \r\n\r\n";
  const HeadParse p = parse(s);
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_EQ(p.head.size, s.size());
  EXPECT_EQ(p.head.req.method, "GET");
  EXPECT_EQ(p.head.req.path, "/v1/models");
  EXPECT_EQ(p.head.req.query, "x=1&y");
  EXPECT_EQ(p.head.req.header("accept"), "*/*");  // optional whitespace around the value is not part of it
  EXPECT_TRUE(p.head.http11);
  EXPECT_TRUE(p.head.keep_alive);  // HTTP/1.1 connections persist by default
  EXPECT_EQ(p.head.content_length, 0u);
}

TEST(HttpParse, IncompleteUntilTheEmptyLine) {
  const std::string s = "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  for (size_t n = 0; n < s.size() - 3; ++n) EXPECT_EQ(status_of(s.substr(0, n)), -1) << n;
  const HeadParse p = parse(s);
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_EQ(p.head.size, s.size() - 3);  // the body is not part of the head
  EXPECT_EQ(p.head.content_length, 3u);
}

TEST(HttpParse, PipelinedRequestsParseOneAtATime) {
  const std::string two = "POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /b HTTP/1.1\r\n\r\n";
  const HeadParse a = parse(two);
  ASSERT_EQ(a.kind, HeadParse::Complete);
  EXPECT_EQ(a.head.req.path, "/a");
  const HeadParse b = parse(std::string_view(two).substr(a.head.size + a.head.content_length));
  ASSERT_EQ(b.kind, HeadParse::Complete);
  EXPECT_EQ(b.head.req.path, "/b");
}

TEST(HttpParse, BareLfEndsLinesAndLeadingEmptyLinesAreIgnored) {
  // RFC 9112 2.2: a recipient may take LF as the line terminator, and should ignore at
  // least one empty line before the request line.
  const HeadParse p = parse("\r\n\nGET / HTTP/1.1\nHost: a\n\n");
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_EQ(p.head.req.path, "/");
  EXPECT_EQ(p.head.req.header("host"), "a");
}

TEST(HttpParse, BareCrIsRejected) {
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET /\r HTTP/1.1\r\n\r\n"), 400);
}

TEST(HttpParse, RequestLine) {
  EXPECT_EQ(status_of("GARBAGE\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET  / HTTP/1.1\r\n\r\n"), 400);   // one SP between the parts
  EXPECT_EQ(status_of("GET /a b HTTP/1.1\r\n\r\n"), 400);  // no whitespace in the target
  EXPECT_EQ(status_of("G(T / HTTP/1.1\r\n\r\n"), 400);     // the method is a token
  EXPECT_EQ(status_of("GET  HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET x HTTP/1.1\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / http/1.1\r\n\r\n"), 400);     // HTTP-name is case-sensitive
  EXPECT_EQ(status_of("GET / HTTP/1.10\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / HTTP/2.0\r\n\r\n"), 505);     // another major version
  EXPECT_EQ(status_of("GET / HTTP/9.9\r\n\r\n"), 505);
  EXPECT_EQ(status_of("\x00\x01\r\n\r\n"s), 400);
  // A higher minor version is served as HTTP/1.1 (RFC 9110 2.5).
  const HeadParse p = parse("GET / HTTP/1.7\r\n\r\n");
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_TRUE(p.head.http11);
}

TEST(HttpParse, AbsoluteFormAndAsteriskForm) {
  // Servers must accept the absolute form (RFC 9112 3.2.2).
  HeadParse p = parse("GET http://example.com:80/v1/models?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_EQ(p.head.req.path, "/v1/models");
  EXPECT_EQ(p.head.req.query, "q=1");
  p = parse("GET HTTPS://example.com HTTP/1.1\r\n\r\n");
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_EQ(p.head.req.path, "/");
  p = parse("OPTIONS * HTTP/1.1\r\n\r\n");
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_EQ(p.head.req.path, "*");
  EXPECT_EQ(status_of("GET * HTTP/1.1\r\n\r\n"), 400);  // asterisk-form is OPTIONS only
  EXPECT_EQ(status_of("CONNECT example.com:443 HTTP/1.1\r\n\r\n"), 400);
}

TEST(HttpParse, FieldSyntax) {
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);  // whitespace before the colon (5.1)
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nX: a\r\n  folded\r\n\r\n"), 400);  // obs-fold (5.2)
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nno colon\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\n: empty name\r\n\r\n"), 400);
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"s), 400);  // NUL in a value
  EXPECT_EQ(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);  // one Host only (RFC 9112 3.2)
  const HeadParse p = parse("GET / HTTP/1.1\r\nX-Y:\r\nAccept: a\r\naccept: b\r\nTab:\tv\t\r\n\r\n");
  ASSERT_EQ(p.kind, HeadParse::Complete);
  EXPECT_EQ(p.head.req.header("x-y"), "");
  EXPECT_TRUE(p.head.req.headers.count("x-y"));
  EXPECT_EQ(p.head.req.header("accept"), "a, b");  // repeated fields combine (RFC 9110 5.3)
  EXPECT_EQ(p.head.req.header("tab"), "v");
}

TEST(HttpParse, ContentLength) {
  auto len = [](std::string_view v) {
    const HeadParse p = parse(std::string("POST / HTTP/1.1\r\nContent-Length: ") + std::string(v) + "\r\n\r\n");
    return p.kind == HeadParse::Complete ? int64_t(p.head.content_length) : -int64_t(p.status);
  };
  EXPECT_EQ(len("0"), 0);
  EXPECT_EQ(len("42"), 42);
  EXPECT_EQ(len("007"), 7);
  EXPECT_EQ(len("42, 42"), 42);  // a list of the same value (RFC 9110 8.6)
  EXPECT_EQ(len("42, 43"), -400);
  EXPECT_EQ(len("abc"), -400);
  EXPECT_EQ(len("+5"), -400);
  EXPECT_EQ(len("-1"), -400);
  EXPECT_EQ(len("0x10"), -400);
  EXPECT_EQ(len("1 2"), -400);
  EXPECT_EQ(len(""), -400);
  EXPECT_EQ(len("1001"), -413);  // over the body limit
  EXPECT_EQ(len("99999999999999999999999999"), -413);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400);
  EXPECT_EQ(len("1000"), 1000);
}

TEST(HttpParse, TransferEncodingIsRefused) {
  // Request bodies must come with Content-Length here; a chunked body cannot be framed.
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
  EXPECT_EQ(status_of("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
}

TEST(HttpParse, Persistence) {
  auto keep = [](std::string_view version, std::string_view conn) {
    std::string s = "GET / " + std::string(version) + "\r\n";
    if (!conn.empty()) s += "Connection: " + std::string(conn) + "\r\n";
    const HeadParse p = parse(s + "\r\n");
    EXPECT_EQ(p.kind, HeadParse::Complete);
    return p.head.keep_alive;
  };
  EXPECT_TRUE(keep("HTTP/1.1", ""));
  EXPECT_FALSE(keep("HTTP/1.1", "close"));
  EXPECT_FALSE(keep("HTTP/1.1", "Upgrade, CLOSE"));
  EXPECT_TRUE(keep("HTTP/1.1", "closed"));  // a different token
  EXPECT_FALSE(keep("HTTP/1.0", ""));
  EXPECT_TRUE(keep("HTTP/1.0", "Keep-Alive"));
  EXPECT_FALSE(keep("HTTP/1.0", "keep-alive, close"));
}

TEST(HttpParse, ExpectContinue) {
  EXPECT_TRUE(parse("POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").head.expect_continue);
  // An HTTP/1.0 client does not understand 100 (RFC 9110 10.1.1).
  EXPECT_FALSE(parse("POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n").head.expect_continue);
}

TEST(HttpParse, HeaderLimit) {
  const std::string big = "GET / HTTP/1.1\r\nX: " + std::string(kMaxHeader, 'b') + "\r\n\r\n";
  EXPECT_EQ(status_of(big), 431);                       // complete but too large
  EXPECT_EQ(status_of(big.substr(0, kMaxHeader + 1)), 431);  // no end in sight
  EXPECT_EQ(status_of(big.substr(0, kMaxHeader)), -1);
}
