#include "server/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <system_error>
#include <unordered_map>

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
using std::chrono::milliseconds;

// A body that has not advanced for this long may be dropped to make room for a new connection.
constexpr auto kStalled = milliseconds(1000);

int ms_left(Clock::time_point deadline) {
  const auto d = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return int(std::max<int64_t>(0, d));
}

// The OpenAI error shape, as the API's own errors.
std::string error_json(int status, std::string_view msg) {
  const char* type = status >= 500 ? "server_error" : "invalid_request_error";
  return fmt::format(R"({{"error":{{"message":"{}","type":"{}","param":null,"code":null}}}})", msg, type);
}

std::string error_response(int status, std::string_view msg) {
  const std::string body = error_json(status, msg);
  return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n{}",
                     status, status_text(status), body.size(), status == 503 ? "Retry-After: 1\r\n" : "", body);
}

// Sends without waiting: for short answers from the reader thread, which must never block.
// They fit in a socket buffer that holds nothing yet, so they are not cut short in practice.
void send_now(int fd, std::string_view data) {
  [[maybe_unused]] const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Writes all of `data`, waiting for room up to timeout_ms (a client that stopped reading).
bool send_all(int fd, std::string_view data, int timeout_ms) {
  const auto deadline = Clock::now() + milliseconds(timeout_ms);
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
      if (r <= 0 || (p.revents & (POLLERR | POLLHUP))) return false;
      continue;
    }
    return false;
  }
  return true;
}

class ConnResponder final : public Responder {
 public:
  ConnResponder(int fd, int write_timeout_ms, bool keep_alive)
      : fd_(fd), timeout_ms_(write_timeout_ms), keep_alive_(keep_alive) {}

  void respond(int status, std::string_view ctype, std::string_view body) override {
    if (state_ != Fresh) return;
    state_ = Done;
    std::string out = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n", status,
        status_text(status), ctype, body.size(), keep_alive_ ? "keep-alive" : "close");
    out.append(body);
    ok_ = send_all(fd_, out, timeout_ms_);
  }
  bool start_stream(int status, std::string_view ctype) override {
    if (state_ != Fresh) return false;
    state_ = Streaming;
    const std::string head = fmt::format(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n"
        "Connection: {}\r\n\r\n",
        status, status_text(status), ctype, keep_alive_ ? "keep-alive" : "close");
    ok_ = send_all(fd_, head, timeout_ms_);
    return ok_;
  }
  bool write(std::string_view data) override {
    if (state_ != Streaming || !ok_) return false;
    if (data.empty()) return true;
    std::string chunk = fmt::format("{:x}\r\n", data.size());
    chunk.append(data);
    chunk.append("\r\n");
    ok_ = send_all(fd_, chunk, timeout_ms_);
    return ok_;
  }
  bool client_gone() override {
    if (!ok_) return true;
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char b;
    const ssize_t n = ::recv(fd_, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
  }
  // Ends the exchange; false when the connection cannot carry another request.
  bool end() {
    if (state_ == Streaming && ok_) ok_ = send_all(fd_, "0\r\n\r\n", timeout_ms_);
    return ok_ && keep_alive_ && state_ != Fresh;
  }
  bool responded() const { return state_ != Fresh; }

 private:
  enum { Fresh, Streaming, Done } state_ = Fresh;
  int fd_;
  int timeout_ms_;
  bool keep_alive_;
  bool ok_ = true;
};

}  // namespace

struct Server::Conn {
  // Waiting: for the first byte of a request. Head, Body: reading them. Busy: a handler owns
  // the connection. Closing: answered; draining what the client still sends.
  enum State { Waiting, Head, Body, Busy, Closing } state = Waiting;
  int fd = -1;
  std::string buf;
  bool fresh = true;                  // no request yet: the head deadline counts from the opening
  Clock::time_point since, deadline;  // when the state began; when it times out
  Clock::time_point last_read;        // when bytes last arrived
  RequestHead head;                   // Body: the head read before it
  size_t reserved = 0;                // bytes of body_bytes_ this connection holds
  bool close_after = false;           // set by the handler's thread: take no further request
  size_t drained = 0;                 // Closing
};

// The reader: owns every connection not held by a handler, on the thread of run().
struct Server::Loop {
  Server& s;
  int ep = -1;
  std::unordered_map<int, std::unique_ptr<Conn>> conns;

  explicit Loop(Server& srv) : s(srv) {
    ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) fail("serve: epoll: {}", std::strerror(errno));
    watch(s.listen_fd_);
    watch(s.wake_[0]);
  }
  ~Loop() { ::close(ep); }

  void watch(int fd) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.fd = fd;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
  }
  void unwatch(int fd) { ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr); }

  void release(Conn* c) {
    s.body_bytes_.fetch_sub(c->reserved);
    c->reserved = 0;
  }
  void close_now(Conn* c) {
    const int fd = c->fd;
    release(c);
    unwatch(fd);
    ::close(fd);
    conns.erase(fd);
  }
  // Closing with unread input makes the kernel send a reset, which can destroy an answer the
  // client has not read yet: stop writing, then drain what the client still sends for a while.
  void linger(Conn* c) {
    release(c);
    ::shutdown(c->fd, SHUT_WR);
    c->state = Conn::Closing;
    std::string().swap(c->buf);
    c->deadline = Clock::now() + milliseconds(1000);
  }
  void refuse(Conn* c, int status, std::string_view msg) {
    send_now(c->fd, error_response(status, msg));
    linger(c);
  }

  // Makes room for a new connection: one already closing, else the one waiting longest for
  // its request head, else the one whose body has stalled longest (a second or more). A client
  // that sends its request at once is never the oldest for long.
  bool evict_one() {
    const auto now = Clock::now();
    Conn* best = nullptr;
    int best_rank = 3;
    Clock::time_point best_age{};
    for (auto& [fd, c] : conns) {
      const Conn::State st = c->state;
      const int rank = st == Conn::Closing                                  ? 0
                       : st == Conn::Waiting || st == Conn::Head            ? 1
                       : st == Conn::Body && now - c->last_read >= kStalled ? 2
                                                                            : 3;
      if (rank == 3) continue;
      const auto age = rank == 2 ? c->last_read : c->since;
      if (rank < best_rank || (rank == best_rank && age < best_age)) {
        best = c.get();
        best_rank = rank;
        best_age = age;
      }
    }
    if (!best) return false;
    close_now(best);
    return true;
  }

  void accept_all() {
    for (;;) {
      const int fd = ::accept4(s.listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        // Out of descriptors or memory: make room, else back off instead of spinning.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
          if (!evict_one()) std::this_thread::sleep_for(milliseconds(20));
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      // Every connection is busy sending a body or running a handler: refuse this one.
      const bool full = conns.size() >= size_t(s.opts_.max_connections) && !evict_one();
      if (full && conns.size() >= size_t(s.opts_.max_connections) + 64) {
        ::close(fd);  // no room even to answer
        continue;
      }
      auto owned = std::make_unique<Conn>();
      Conn* c = owned.get();
      c->fd = fd;
      c->since = c->last_read = Clock::now();
      c->deadline = c->since + milliseconds(s.opts_.header_timeout_ms);
      watch(fd);
      conns.emplace(fd, std::move(owned));
      // Lingers (over the limit, briefly) so that the answer is read, not reset.
      if (full) refuse(c, 503, "every connection is busy; retry later");
    }
  }

  void on_readable(Conn* c) {
    if (c->state == Conn::Busy) return;
    char tmp[65536];
    const ssize_t n = ::recv(c->fd, tmp, sizeof tmp, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    if (n <= 0) return close_now(c);
    c->last_read = Clock::now();
    if (c->state == Conn::Closing) {
      c->drained += size_t(n);
      if (c->drained > (64u << 20)) close_now(c);
      return;
    }
    const size_t had = c->buf.size();
    c->buf.append(tmp, size_t(n));
    // A head ends with an empty line: until one arrives it stays incomplete, and parsing it
    // again would let a client trickling bytes cost work quadratic in its head.
    if (c->state == Conn::Head && c->buf.size() <= s.opts_.max_header) {
      const size_t from = had < 2 ? 0 : had - 2;
      if (c->buf.find("\n\n", from) == std::string::npos && c->buf.find("\n\r\n", from) == std::string::npos) return;
    }
    advance(c);
  }

  // Moves a connection on with what it has buffered: a head, then its body, then a handler.
  void advance(Conn* c) {
    const auto now = Clock::now();
    if (c->state == Conn::Waiting && !c->buf.empty()) {
      c->state = Conn::Head;
      if (!c->fresh) c->deadline = now + milliseconds(s.opts_.header_timeout_ms);
    }
    if (c->state == Conn::Head) {
      HeadParse hp = parse_request_head(c->buf, s.opts_.max_header, s.opts_.max_body);
      if (hp.kind == HeadParse::Invalid) return refuse(c, hp.status, hp.message);
      if (hp.kind == HeadParse::Incomplete) return;
      const size_t len = hp.head.content_length;
      // The budget is taken before the body is read, so bodies never hold more than it.
      size_t cur = s.body_bytes_.load();
      do {
        if (len > 0 && cur + len > s.opts_.max_body_total)
          return refuse(c, 503, "the server holds too many request bodies; retry later");
      } while (!s.body_bytes_.compare_exchange_weak(cur, cur + len));
      c->reserved = len;
      c->buf.erase(0, hp.head.size);
      c->head = std::move(hp.head);
      c->state = Conn::Body;
      c->deadline = now + milliseconds(s.opts_.body_timeout_ms);
      if (c->buf.size() < len) {
        c->buf.reserve(len);
        if (c->head.expect_continue) send_now(c->fd, "HTTP/1.1 100 Continue\r\n\r\n");
      }
    }
    if (c->state == Conn::Body && c->buf.size() >= c->head.content_length) dispatch(c);
  }

  void dispatch(Conn* c) {
    Request req = std::move(c->head.req);
    const size_t len = c->head.content_length;
    if (c->buf.size() == len) {
      req.body = std::move(c->buf);  // the usual case: no copy of a large body
      c->buf = std::string();
    } else {
      req.body = c->buf.substr(0, len);
      c->buf.erase(0, len);
    }
    const bool keep_alive = c->head.keep_alive;
    unwatch(c->fd);
    c->state = Conn::Busy;
    c->fresh = false;
    Worker& w = s.workers_.emplace_back();
    try {
      w.thread = std::thread([srv = &s, c, r = std::move(req), keep_alive, &w]() mutable {
        srv->handle(c, std::move(r), keep_alive);
        w.done.store(true);
      });
    } catch (const std::system_error&) {
      s.workers_.pop_back();
      watch(c->fd);
      refuse(c, 503, "the server cannot start another request; retry later");
    }
  }

  // Connections whose handler finished come back to the reader.
  void take_back() {
    std::vector<Conn*> back;
    {
      std::lock_guard lk(s.mu_);
      back.swap(s.returned_);
    }
    for (Conn* c : back) {
      watch(c->fd);
      if (c->close_after || s.stopping_.load()) {
        linger(c);
        continue;
      }
      c->state = Conn::Waiting;
      c->since = Clock::now();
      c->deadline = c->since + milliseconds(s.opts_.idle_timeout_ms);
      advance(c);  // a pipelined request may be buffered already
    }
  }

  void sweep() {
    const auto now = Clock::now();
    std::vector<Conn*> expired;
    for (auto& [fd, c] : conns)
      if (c->state != Conn::Busy && c->deadline <= now) expired.push_back(c.get());
    for (Conn* c : expired) {
      if (c->state == Conn::Head) refuse(c, 408, "request head not received in time");
      else if (c->state == Conn::Body) refuse(c, 408, "request body not received in time");
      else close_now(c);  // waiting (nothing to answer) or done closing
    }
    for (auto it = s.workers_.begin(); it != s.workers_.end();) {
      if (!it->done.load()) {
        ++it;
        continue;
      }
      it->thread.join();
      it = s.workers_.erase(it);
    }
  }

  void run() {
    epoll_event evs[256];
    auto next_sweep = Clock::now();
    while (!s.stopping_.load()) {
      const int n = ::epoll_wait(ep, evs, 256, 100);
      for (int i = 0; i < n; ++i) {
        const int fd = evs[i].data.fd;
        if (fd == s.listen_fd_) {
          accept_all();
        } else if (fd == s.wake_[0]) {
          char tmp[64];
          while (::read(fd, tmp, sizeof tmp) == ssize_t(sizeof tmp)) {
          }
        } else if (auto it = conns.find(fd); it != conns.end()) {
          on_readable(it->second.get());
        }
      }
      take_back();
      if (Clock::now() >= next_sweep) {
        sweep();
        next_sweep = Clock::now() + milliseconds(100);
      }
    }
    // Handlers see their client gone and return; then every connection closes.
    for (auto& [fd, c] : conns)
      if (c->state == Conn::Busy) ::shutdown(fd, SHUT_RDWR);
    for (Worker& w : s.workers_) w.thread.join();
    s.workers_.clear();
    for (auto& [fd, c] : conns) ::close(fd);
    conns.clear();
    {
      std::lock_guard lk(s.mu_);
      s.returned_.clear();
    }
    s.body_bytes_.store(0);
  }
};

Server::Server(const ServerOpts& opts, Handler handler) : opts_(opts), handler_(std::move(handler)) {}

Server::~Server() {
  stop();
  for (Worker& w : workers_)
    if (w.thread.joinable()) w.thread.join();
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
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) break;
    err = std::strerror(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) fail("serve: cannot listen on {}:{}: {}", opts_.host, opts_.port, err);
  listen_fd_ = fd;
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) fail("serve: pipe: {}", std::strerror(errno));
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
}

void Server::run() {
  if (listen_fd_ < 0) fail("serve: run() before listen()");
  Loop loop(*this);
  loop.run();
}

// On the request's own thread.
void Server::handle(Conn* c, Request req, bool keep_alive) {
  ConnResponder resp(c->fd, opts_.write_timeout_ms, keep_alive && !stopping_.load());
  bool ok = true;
  try {
    handler_(req, resp);
  } catch (const std::exception&) {
    if (!resp.responded()) resp.respond(500, "application/json", error_json(500, "internal error"));
    ok = false;
  }
  if (!resp.responded()) resp.respond(500, "application/json", error_json(500, "no response"));
  ok = resp.end() && ok;
  req = Request();  // the body is gone before its budget is given back
  body_bytes_.fetch_sub(c->reserved);
  c->reserved = 0;
  c->close_after = !ok;
  {
    std::lock_guard lk(mu_);
    returned_.push_back(c);
  }
  const char w = 'r';
  [[maybe_unused]] ssize_t n = ::write(wake_[1], &w, 1);
}

}  // namespace fathom::http
