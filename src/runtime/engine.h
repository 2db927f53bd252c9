#pragma once
// Continuous-batching engine: one thread owns the model and a Runner (runner.h) with a slot
// per batched sequence; requests join and leave the running batch between steps, and every
// step is one batched forward over all running sequences (decode tokens plus prefill chunks
// of newly admitted ones). GenRequest, FinishReason and TokenLogprob are in sequence.h.
// It speaks token ids only: no text, no HTTP.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "model/model.h"
#include "runtime/runner.h"
#include "runtime/sequence.h"

namespace fathom {

struct EngineOpts {
  int64_t max_batch = 8;         // KV slots = sequences decoded together
  int64_t max_ctx = 4096;        // tokens per slot (prompt + completion)
  int64_t max_queue = 64;        // requests waiting for a busy slot beyond which submit() refuses
  int64_t prefill_chunk = 256;   // prompt tokens per sequence per step
  int64_t step_prefill_budget = 512;  // prompt tokens per step over all sequences
  AttnMode attn = AttnMode::Absorbed;
  // Speculative decoding: the most tokens a request may have the MTP module draft per step
  // (0: off). A request's own GenRequest::draft (clipped to this) turns it on for it; requests
  // with and without drafts share steps.
  int64_t max_draft = 0;
};

struct GenEvent {
  enum Kind { Token, Done } kind = Token;
  int32_t token = 0;
  float logprob = 0;                     // when logprobs were asked for
  std::vector<TokenLogprob> top;         // top_logprobs alternatives, best first
  FinishReason reason = FinishReason::None;
  std::string error;                     // reason Error
};

// The channel between the engine thread (producer) and one request's consumer.
class GenStream {
 public:
  // Waits up to `timeout` for the next event. False on timeout.
  bool next(GenEvent& out, std::chrono::milliseconds timeout);
  // Asks the engine to drop the sequence; it frees the slot at the next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }
  // Prompt tokens whose KV was reused from an earlier request (known once admitted).
  int64_t cached_tokens() const { return cached_.load(); }
  int64_t prompt_tokens() const { return prompt_tokens_; }

 private:
  friend class Engine;
  void push(GenEvent ev);
  std::mutex mu_;
  std::condition_variable cv_;
  // Sized at submit for every event the request can produce, so the engine thread never
  // allocates to publish a token.
  std::vector<GenEvent> events_;
  size_t read_ = 0;
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> cached_{0};
  int64_t prompt_tokens_ = 0;
};

struct EngineStats {
  int64_t requests = 0;           // admitted since start
  int64_t prompt_tokens = 0;
  int64_t cached_prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t running = 0, queued = 0;
  int64_t slots = 0, max_ctx = 0;
  int64_t kv_tokens_used = 0;     // tokens held by running sequences
  double tokens_per_s = 0;        // completion tokens per second over the last few seconds
  int64_t steps = 0;
  SpecStats spec;                 // speculative decoding since start
};

struct QueueFull : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Engine {
 public:
  Engine(Model& model, const EngineOpts& opts);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request. Throws QueueFull past max_queue, fathom::Error when the prompt is
  // empty or does not fit the context.
  std::shared_ptr<GenStream> submit(GenRequest req);
  EngineStats stats() const;
  const EngineOpts& opts() const { return opts_; }
  size_t kv_bytes() const { return runner_.cache().bytes(); }

 private:
  struct Request;
  void loop();
  void admit();
  void step();
  void record_rate(int64_t tokens);

  EngineOpts opts_;
  StepOpts step_opts_;
  Runner runner_;  // only the engine thread touches it
  std::vector<std::unique_ptr<Request>> running_;  // owns what the scheduler runs

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Request>> waiting_;
  bool stop_ = false;

  // Counters read by stats() from other threads.
  std::atomic<int64_t> n_requests_{0}, n_prompt_{0}, n_cached_{0}, n_completion_{0}, n_running_{0},
      n_kv_used_{0}, n_steps_{0}, n_drafted_{0}, n_accepted_{0}, n_verify_steps_{0};
  // Completion tokens per wall-clock second over a short ring of seconds (no allocation).
  static constexpr int kRateSecs = 8;
  mutable std::mutex rate_mu_;
  int64_t rate_sec_[kRateSecs] = {};
  int64_t rate_tok_[kRateSecs] = {};
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();

  std::thread thread_;
};

}  // namespace fathom
