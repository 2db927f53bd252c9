#include "server/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "core/error.h"

namespace fathom::http {

const char* status_text(int s) {
  switch (s) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return int(std::max<int64_t>(0, d));
}

enum class Rd { Ok, Closed, Timeout };

// One connection's socket with its read buffer.
struct Sock {
  int fd;
  std::string buf;
  int write_timeout_ms;

  Rd fill(Clock::time_point deadline) {
    pollfd p{fd, POLLIN, 0};
    for (;;) {
      const int r = ::poll(&p, 1, ms_left(deadline));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return Rd::Timeout;
      break;
    }
    char tmp[16384];
    for (;;) {
      const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Rd::Closed;
      buf.append(tmp, size_t(n));
      return Rd::Ok;
    }
  }

  bool send_all(std::string_view data) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(write_timeout_ms);
    while (!data.empty()) {
      const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        data.remove_prefix(size_t(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd, POLLOUT, 0};
        const int r = ::poll(&p, 1, ms_left(deadline));
        if (r <= 0 || (p.revents & (POLLERR | POLLHUP))) return false;  // a client that stopped reading
        continue;
      }
      return false;
    }
    return true;
  }
};

class ConnResponder final : public Responder {
 public:
  ConnResponder(Sock& c, bool keep_alive) : c_(c), keep_alive_(keep_alive) {}

  void respond(int status, std::string_view ctype, std::string_view body) override {
    if (state_ != Fresh) return;
    state_ = Done;
    std::string out = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n", status,
        status_text(status), ctype, body.size(), keep_alive_ ? "keep-alive" : "close");
    out.append(body);
    ok_ = c_.send_all(out);
  }
  bool start_stream(int status, std::string_view ctype) override {
    if (state_ != Fresh) return false;
    state_ = Streaming;
    const std::string head = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
        "Connection: {}\r\n\r\n",
        status, status_text(status), ctype, keep_alive_ ? "keep-alive" : "close");
    ok_ = c_.send_all(head);
    return ok_;
  }
  bool write(std::string_view data) override {
    if (state_ != Streaming || !ok_) return false;
    if (data.empty()) return true;
    std::string chunk = fmt::format("{:x}\r\n", data.size());
    chunk.append(data);
    chunk.append("\r\n");
    ok_ = c_.send_all(chunk);
    return ok_;
  }
  bool client_gone() override {
    if (!ok_) return true;
    pollfd p{c_.fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char b;
    const ssize_t n = ::recv(c_.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }
  // Ends the exchange; false when the connection cannot carry another request.
  bool end() {
    if (state_ == Streaming && ok_) ok_ = c_.send_all("0\r\n\r\n");
    return ok_ && keep_alive_ && state_ != Fresh;
  }
  bool responded() const { return state_ != Fresh; }

 private:
  enum { Fresh, Streaming, Done } state_ = Fresh;
  Sock& c_;
  bool keep_alive_;
  bool ok_ = true;
};

// Closing with unread input makes the kernel send a reset, which can destroy a response (413,
// 408) the client has not read yet: stop writing, then drain what the client still sends for
// a short while.
void linger_close(int fd) {
  ::shutdown(fd, SHUT_WR);
  const auto deadline = Clock::now() + std::chrono::milliseconds(1000);
  char tmp[16384];
  size_t drained = 0;
  pollfd p{fd, POLLIN, 0};
  while (drained < (64u << 20) && ::poll(&p, 1, ms_left(deadline)) > 0) {
    const ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) break;
    drained += size_t(n);
  }
}

void simple(Sock& c, int status, std::string_view msg) {
  ConnResponder r(c, false);
  r.respond(status, "application/json",
            fmt::format(R"({{"error":{{"message":"{}","type":"invalid_request_error","param":null,"code":null}}}})", msg));
}

}  // namespace

Server::Server(const ServerOpts& opts, Handler handler) : opts_(opts), handler_(std::move(handler)) {}

Server::~Server() {
  stop();
  reap(true);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : wake_)
    if (fd >= 0) ::close(fd);
}

int Server::listen() {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  const std::string port = std::to_string(opts_.port);
  if (int e = ::getaddrinfo(opts_.host.c_str(), port.c_str(), &hints, &res); e != 0)
    fail("serve: cannot resolve {}: {}", opts_.host, gai_strerror(e));
  int fd = -1;
  std::string err;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, 128) == 0) break;
    err = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) fail("serve: cannot listen on {}:{}: {}", opts_.host, opts_.port, err);
  listen_fd_ = fd;
  if (::pipe2(wake_, O_CLOEXEC) != 0) fail("serve: pipe: {}", std::strerror(errno));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
}

void Server::stop() {
  if (stopping_.exchange(true)) return;
  if (wake_[1] >= 0) {
    const char c = 'x';
    [[maybe_unused]] ssize_t n = ::write(wake_[1], &c, 1);
  }
  std::lock_guard lk(mu_);
  for (auto& c : conns_)
    if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
}

void Server::reap(bool all) {
  std::list<Conn> dead;
  {
    std::lock_guard lk(mu_);
    for (auto it = conns_.begin(); it != conns_.end();) {
      auto next = std::next(it);
      if (all || it->done.load()) dead.splice(dead.end(), conns_, it);
      it = next;
    }
  }
  for (auto& c : dead) c.thread.join();
}

void Server::run() {
  if (listen_fd_ < 0) fail("serve: run() before listen()");
  while (!stopping_.load()) {
    pollfd p[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    const int r = ::poll(p, 2, 1000);
    reap(false);
    if (r <= 0 || !(p[0].revents & POLLIN)) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors or memory: back off instead of spinning on a readable socket.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::lock_guard lk(mu_);
    if (int(conns_.size()) >= opts_.max_connections) {
      Sock c{fd, {}, 1000};
      simple(c, 503, "too many connections");
      ::close(fd);
      continue;
    }
    Conn& c = conns_.emplace_back();
    c.fd = fd;
    c.thread = std::thread([this, fd, &c] {
      serve_conn(fd);
      linger_close(fd);
      {
        std::lock_guard lk2(mu_);
        c.fd = -1;
      }
      ::close(fd);
      c.done.store(true);
    });
  }
}

void Server::serve_conn(int fd) {
  Sock c{fd, {}, opts_.write_timeout_ms};
  while (!stopping_.load()) {
    // The head: wait for a first byte up to the idle timeout, then the whole head must
    // arrive within the header timeout (a client trickling bytes is dropped).
    auto deadline = Clock::now() + std::chrono::milliseconds(opts_.idle_timeout_ms);
    bool started = !c.buf.empty();
    if (started) deadline = Clock::now() + std::chrono::milliseconds(opts_.header_timeout_ms);
    HeadParse hp;
    for (;;) {
      hp = parse_request_head(c.buf, opts_.max_header, opts_.max_body);
      if (hp.kind == HeadParse::Invalid) return simple(c, hp.status, hp.message);
      if (hp.kind == HeadParse::Complete) break;
      const Rd r = c.fill(deadline);
      if (r == Rd::Closed) return;
      if (r == Rd::Timeout) {
        if (started) simple(c, 408, "request head not received in time");
        return;
      }
      if (!started) {
        started = true;
        deadline = Clock::now() + std::chrono::milliseconds(opts_.header_timeout_ms);
      }
    }
    Request& req = hp.head.req;
    const size_t len = hp.head.content_length;
    c.buf.erase(0, hp.head.size);
    if (hp.head.expect_continue && c.buf.size() < len && !c.send_all("HTTP/1.1 100 Continue\r\n\r\n")) return;
    const auto body_deadline = Clock::now() + std::chrono::milliseconds(opts_.body_timeout_ms);
    while (c.buf.size() < len) {
      const Rd r = c.fill(body_deadline);
      if (r == Rd::Closed) return;
      if (r == Rd::Timeout) return simple(c, 408, "request body not received in time");
    }
    req.body = c.buf.substr(0, len);
    c.buf.erase(0, len);

    const bool keep_alive = hp.head.keep_alive;
    ConnResponder resp(c, keep_alive && !stopping_.load());
    try {
      handler_(req, resp);
    } catch (const std::exception& e) {
      if (!resp.responded()) simple(c, 500, "internal error");
      return;
    }
    if (!resp.responded()) resp.respond(500, "application/json", R"({"error":{"message":"no response","type":"server_error","param":null,"code":null}})");
    if (!resp.end()) return;
  }
}

}  // namespace fathom::http
