// fathom serve: an OpenAI/DeepSeek-compatible HTTP API over the continuous-batching engine.
#include <pthread.h>
#include <sys/resource.h>
#include <signal.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/options.h"
#include "core/error.h"
#include "runtime/engine.h"
#include "server/api.h"
#include "server/auth.h"
#include "server/http.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom::cli {

namespace {

// Threads started before main (OpenBLAS starts its workers when the binary loads) do not
// have SIGINT/SIGTERM blocked, so the kernel may hand a stop signal to one of them, where the
// default action would kill the server mid-response. This handler runs there instead and
// passes the signal on to the thread that waits for it. Set once, before the handler.
std::atomic<pthread_t> g_signal_thread{};

void forward_stop_signal(int signo) { pthread_kill(g_signal_thread.load(), signo); }

std::string human_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", b, units[u]);
}

int seconds_to_ms(double s) { return int(std::min(s * 1000, 1e9)); }

// Every connection is a descriptor; the usual soft limit of 1024 would refuse them early.
void raise_fd_limit(size_t want) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
  rl.rlim_cur = std::min<rlim_t>(want, rl.rlim_max);
  ::setrlimit(RLIMIT_NOFILE, &rl);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

}  // namespace

void add_serve(CLI::App& app) {
  struct Args {
    ModelArgs m;
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string api_key;
    std::string api_key_file;
    int64_t max_batch = 8;
    int64_t ctx = 4096;
    int64_t queue = 64;
    int64_t prefill_chunk = 256;
    size_t max_body = 0;        // 0: sized to the context
    size_t max_body_total = 0;  // 0: from max_body
    double header_timeout = 5;
    double read_timeout = 10;
    double idle_timeout = 60;
    int max_connections = 512;
    std::string name;
    std::string tokenizer;
    SpeculativeArgs spec;
  };
  auto a = std::make_shared<Args>();
  auto* sub = app.add_subcommand("serve", "OpenAI/DeepSeek-compatible HTTP API with continuous batching");
  a->m.add(sub);
  add_tokenizer_option(sub, a->tokenizer);
  sub->add_option("--host", a->host, "address to listen on (0.0.0.0: every interface)");
  sub->add_option("--port", a->port, "port (0: any free port)")->check(in_range(0, 65535));
  sub->add_option("--api-key", a->api_key,
                  "require 'Authorization: Bearer KEY' (visible in ps; prefer --api-key-file or FATHOM_API_KEY)");
  sub->add_option("--api-key-file", a->api_key_file, "read the API key from the first line of this file");
  sub->add_option("--max-batch", a->max_batch, "sequences decoded together (KV slots)")->check(at_least(1));
  sub->add_option("--ctx", a->ctx, "tokens per sequence (prompt + completion)")->check(in_range(2, 1 << 24));
  sub->add_option("--queue", a->queue, "waiting requests beyond which the server answers 429")
      ->check(at_least(0));
  sub->add_option("--prefill-chunk", a->prefill_chunk, "prompt tokens per sequence per step")
      ->check(at_least(1));
  a->spec.add(sub);
  sub->add_option("--max-body", a->max_body,
                  "largest request body in bytes, 413 beyond (default: 1 MiB + 64 bytes per context token)");
  sub->add_option("--max-body-total", a->max_body_total,
                  "request body bytes held at once by all connections, 503 beyond (default: 16 x --max-body, "
                  "at least 64 MiB)");
  sub->add_option("--header-timeout", a->header_timeout,
                  "seconds a connection may take to send a whole request head (then it is closed)")
      ->check(at_least(0.001));
  sub->add_option("--read-timeout", a->read_timeout, "seconds a client may take to send a request body")
      ->check(at_least(0.001));
  sub->add_option("--idle-timeout", a->idle_timeout, "seconds a kept-alive connection may wait for its next request")
      ->check(at_least(0.001));
  sub->add_option("--max-connections", a->max_connections,
                  "open connections; beyond, the one idle the longest is closed (503 when all are busy)")
      ->check(in_range(1, 1 << 20));
  sub->add_option("--served-model-name", a->name, "model id in the API (default: the directory name)");
  sub->callback([a] {
    // Signals are taken by one thread with sigwait; every other thread inherits the mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
#if defined(__GLIBC__)
    // One malloc arena per connection thread would keep each thread's freed pages; the
    // request threads allocate little, so two arenas let memory return to the idle level.
    mallopt(M_ARENA_MAX, 2);
    // A fixed threshold keeps large request buffers (bodies, their JSON) in mappings of their
    // own that go back to the system when freed; the default one rises with the first large
    // free and then leaves such buffers in the heap.
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
#endif

    // Before the model loads, so a bad key file fails at once.
    const std::string api_key = server::resolve_api_key(a->api_key, a->api_key_file, std::getenv("FATHOM_API_KEY"));

    auto model = load_model(a->m.model, a->m.load_opts());
    const std::string& tok_dir = tokenizer_dir(a->m.model, a->tokenizer);
    Tokenizer tok = Tokenizer::load(tok_dir);
    std::optional<ChatTemplate> tmpl;
    try {
      tmpl = ChatTemplate::load(tok_dir);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fathom serve: no chat template (%s); /v1/chat/completions is off\n", e.what());
    }
    if (tok.vocab_size() > model->config().vocab_size)
      std::fprintf(stderr, "fathom serve: warning: the tokenizer has %d ids but the model only %lld\n",
                   tok.vocab_size(), (long long)model->config().vocab_size);

    EngineOpts eo;
    eo.max_batch = a->max_batch;
    eo.max_ctx = a->ctx;
    eo.max_queue = a->queue;
    eo.prefill_chunk = a->prefill_chunk;
    eo.step_prefill_budget = std::max<int64_t>(a->prefill_chunk, 512);
    eo.attn = parse_attn(a->m.attn);
    eo.max_draft = a->spec.draft_tokens();
    Engine engine(*model, eo);

    server::ApiDeps deps;
    deps.engine = &engine;
    deps.tokenizer = &tok;
    deps.chat_template = tmpl ? &*tmpl : nullptr;
    deps.model_id = a->name.empty() ? std::filesystem::path(a->m.model).lexically_normal().filename().string() : a->name;
    if (deps.model_id.empty()) deps.model_id = std::filesystem::absolute(a->m.model).parent_path().filename().string();
    deps.api_key = api_key;
    deps.weight_bytes = model->weight_bytes();
    server::Api api(deps);

    http::ServerOpts so;
    so.host = a->host;
    so.port = a->port;
    // A request never needs much more than its tokens' text: 64 bytes a token covers JSON
    // escapes and token-id lists; the MiB covers tools and other fields.
    so.max_body = a->max_body ? a->max_body : (1u << 20) + size_t(a->ctx) * 64;
    so.max_body_total = a->max_body_total ? a->max_body_total : std::max<size_t>(16 * so.max_body, 64u << 20);
    if (so.max_body_total < so.max_body)
      fail("serve: --max-body-total ({}) is below the largest body ({}), which could then never be read",
           so.max_body_total, so.max_body);
    so.header_timeout_ms = seconds_to_ms(a->header_timeout);
    so.body_timeout_ms = seconds_to_ms(a->read_timeout);
    so.idle_timeout_ms = seconds_to_ms(a->idle_timeout);
    so.max_connections = a->max_connections;
    raise_fd_limit(size_t(a->max_connections) + 64);
    http::Server srv(so, [&api](http::Request& rq, http::Responder& rs) { api.handle(rq, rs); });
    const int port = srv.listen();

    const ModelConfig& cfg = model->config();
    std::fprintf(stderr,
                 "fathom serve: model %s (%s, %lld layers, vocab %lld)\n"
                 "fathom serve: memory: weights %s + KV pool %s (%lld slots x %lld tokens) = %s\n"
                 "fathom serve: listening on http://%s:%d\n",
                 deps.model_id.c_str(), arch_name(cfg.arch), (long long)cfg.num_hidden_layers,
                 (long long)cfg.vocab_size, human_bytes(double(model->weight_bytes())).c_str(),
                 human_bytes(double(engine.kv_bytes())).c_str(), (long long)eo.max_batch, (long long)eo.max_ctx,
                 human_bytes(double(model->weight_bytes() + engine.kv_bytes())).c_str(), a->host.c_str(), port);
    if (api_key.empty())
      std::fprintf(stderr, "%s", is_loopback(a->host)
                                     ? "fathom serve: no API key; listening on this machine only (--host 0.0.0.0 and "
                                       "--api-key-file to serve others)\n"
                                     : "fathom serve: warning: no API key, and the address is reachable from other "
                                       "machines (set --api-key-file or FATHOM_API_KEY)\n");
    std::fflush(stderr);

    std::thread sig([&srv, sigs] {
      int s = 0;
      sigwait(&sigs, &s);
      srv.stop();
    });
    g_signal_thread.store(sig.native_handle());
    struct sigaction sa {};
    sa.sa_handler = forward_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    srv.run();
    // Wake the signal thread if run() ended for another reason.
    pthread_kill(sig.native_handle(), SIGTERM);
    sig.join();
    std::fprintf(stderr, "fathom serve: stopped\n");
  });
}

}  // namespace fathom::cli
