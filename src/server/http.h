#pragma once
// A small HTTP/1.1 server on POSIX sockets: keep-alive, Content-Length bodies with a size
// limit and a total budget, read deadlines against slow clients, chunked streaming responses,
// and a way for a handler to notice that its client went away while it waits.
#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace fathom::http {

struct Request {
  std::string method;
  std::string path;    // without the query string
  std::string query;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A request head parsed from the start of a connection's buffer (RFC 9112), without sockets.
struct RequestHead {
  Request req;                // everything but the body
  bool http11 = true;         // HTTP/1.1 (else 1.0)
  bool keep_alive = true;     // the connection may carry another request after this one
  bool expect_continue = false;
  size_t content_length = 0;  // the body follows the head
  size_t size = 0;            // bytes of the head, its terminating empty line included
};

struct HeadParse {
  enum Kind { Incomplete, Complete, Invalid } kind = Incomplete;
  int status = 0;        // Invalid: the status to answer with before closing
  std::string message;   // Invalid: why
  RequestHead head;      // Complete
};

// Parses the request head at the start of `buf`. Incomplete until the head's empty line has
// arrived; Invalid (431) once more than `max_header` bytes hold no complete head, or (413)
// when the declared body exceeds `max_body`. Lines end in LF with an optional CR before it.
HeadParse parse_request_head(std::string_view buf, size_t max_header, size_t max_body);

// What a handler uses to answer: either respond() once, or start_stream() then write()
// chunks (the connection ends the stream when the handler returns).
class Responder {
 public:
  virtual ~Responder() = default;
  virtual void respond(int status, std::string_view content_type, std::string_view body) = 0;
  virtual bool start_stream(int status, std::string_view content_type) = 0;
  // False once the client is gone.
  virtual bool write(std::string_view data) = 0;
  // True when the peer closed its side (checked without blocking).
  virtual bool client_gone() = 0;
};

// The handler may take the request's parts (the body, once parsed, to free it early).
using Handler = std::function<void(Request&, Responder&)>;

struct ServerOpts {
  std::string host = "127.0.0.1";
  int port = 8080;
  size_t max_body = 8u << 20;        // bigger bodies get 413
  size_t max_header = 64u << 10;     // bigger header blocks get 431
  size_t max_body_total = 64u << 20; // bodies held at once, all connections together; beyond: 503
  int header_timeout_ms = 5000;      // to send a whole request head: from the connection's
                                     // opening, or from the first byte of a later request
  int body_timeout_ms = 30000;       // to send a whole body
  int idle_timeout_ms = 60000;       // keep-alive wait for the next request
  int write_timeout_ms = 30000;      // a client that stops reading is dropped
  int max_connections = 512;         // when reached, the connection idle the longest (or with
                                     // a stalled body) is closed for a new one; 503 when every
                                     // one is busy
};

// Connections are read by one thread with epoll, so an idle or slow client costs a socket
// and its buffer, not a thread. A request whose head and body have arrived runs its handler
// on a thread of its own (handlers block while they generate); then the connection returns
// to the reader.
class Server {
 public:
  Server(const ServerOpts& opts, Handler handler);
  ~Server();
  // Binds and listens; throws fathom::Error on failure. Returns the bound port.
  int listen();
  // Serves connections until stop().
  void run();
  // Safe from any thread.
  void stop();

 private:
  struct Conn;
  struct Loop;
  void handle(Conn* c, Request req, bool keep_alive);

  ServerOpts opts_;
  Handler handler_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};  // self-pipe to interrupt epoll_wait in run()
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> body_bytes_{0};  // bodies held by requests in flight
  std::mutex mu_;
  std::vector<Conn*> returned_;  // connections whose handler finished, for the loop to take back
  struct Worker {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::list<Worker> workers_;
};

const char* status_text(int status);

}  // namespace fathom::http
