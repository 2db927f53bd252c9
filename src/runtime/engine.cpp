#include "runtime/engine.h"

#include <algorithm>

#include "core/error.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace fathom {

void GenStream::push(GenEvent ev) {
  {
    std::lock_guard lk(mu_);
    events_.push_back(std::move(ev));
  }
  cv_.notify_one();
}

bool GenStream::next(GenEvent& out, std::chrono::milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return read_ < events_.size(); })) return false;
  out = std::move(events_[read_++]);
  return true;
}

namespace {

const EngineOpts& checked(const EngineOpts& o) {
  if (o.max_batch < 1) fail("engine: max_batch must be at least 1");
  if (o.max_draft < 0) fail("engine: max_draft must not be negative");
  if (o.max_ctx < 2) fail("engine: the context must hold at least 2 tokens");
  return o;
}

GenEvent done_event(FinishReason r, const std::string& err = {}) {
  return GenEvent{GenEvent::Done, 0, 0, {}, r, err};
}

}  // namespace

struct Engine::Request : Sequence {
  std::shared_ptr<GenStream> out;
  using Sequence::Sequence;
};

Engine::Engine(Model& model, const EngineOpts& opts)
    : opts_(checked(opts)), runner_(model, opts.max_batch, opts.max_ctx) {
  step_opts_.prefill_chunk = opts_.prefill_chunk;
  step_opts_.prefill_budget = opts_.step_prefill_budget;
  step_opts_.attn = opts_.attn;
  if (opts_.max_draft > 0 && !runner_.enable_speculation(opts_.max_draft))
    fail("speculative decoding needs a model with a multi-token prediction (MTP) module");
  running_.reserve(size_t(opts_.max_batch));
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& s : running_) s->out->push(done_event(FinishReason::Cancelled));
  for (auto& s : waiting_) s->out->push(done_event(FinishReason::Cancelled));
}

std::shared_ptr<GenStream> Engine::submit(GenRequest req) {
  validate_prompt(req.prompt, runner_.vocab(), opts_.max_ctx);
  const int64_t n = int64_t(req.prompt.size());
  req.max_tokens = std::max<int64_t>(req.max_tokens, 1);  // the Sequence clips it to the context
  req.draft = std::clamp<int64_t>(req.draft, 0, opts_.max_draft);
  // Requests that free slots will take at once do not count against the queue.
  auto full = [&] {
    const int64_t free_slots = std::max<int64_t>(0, opts_.max_batch - n_running_.load());
    return int64_t(waiting_.size()) >= opts_.max_queue + free_slots;
  };
  {
    std::lock_guard lk(mu_);
    if (full()) throw QueueFull("the request queue is full");
  }
  // The sequence's buffers are allocated here, on the caller's thread, not in the engine loop.
  auto seq = std::make_unique<Request>(std::move(req), runner_.vocab(), opts_.max_ctx);
  seq->out = std::make_shared<GenStream>();
  seq->out->prompt_tokens_ = n;
  seq->out->events_.reserve(size_t(seq->max_tokens + 1));  // every token, then Done
  auto out = seq->out;
  {
    std::lock_guard lk(mu_);
    if (full()) throw QueueFull("the request queue is full");
    waiting_.push_back(std::move(seq));
  }
  cv_.notify_one();
  return out;
}

EngineStats Engine::stats() const {
  EngineStats s;
  s.requests = n_requests_.load();
  s.prompt_tokens = n_prompt_.load();
  s.cached_prompt_tokens = n_cached_.load();
  s.completion_tokens = n_completion_.load();
  s.running = n_running_.load();
  s.kv_tokens_used = n_kv_used_.load();
  s.steps = n_steps_.load();
  s.spec = SpecStats{n_drafted_.load(), n_accepted_.load(), n_verify_steps_.load()};
  s.slots = opts_.max_batch;
  s.max_ctx = opts_.max_ctx;
  {
    std::lock_guard lk(mu_);
    s.queued = int64_t(waiting_.size());
  }
  {
    // Rate over the last 5 whole seconds (or fewer right after start).
    std::lock_guard lk(rate_mu_);
    const double up = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const int64_t now = int64_t(up);
    int64_t tok = 0;
    for (int i = 0; i < kRateSecs; ++i)
      if (rate_sec_[i] >= now - 5 && rate_sec_[i] < now) tok += rate_tok_[i];
    const double span = std::min(5.0, std::max(1.0, double(now)));
    s.tokens_per_s = double(tok) / span;
  }
  return s;
}

void Engine::record_rate(int64_t tokens) {
  const auto up = std::chrono::steady_clock::now() - start_;
  const int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(up).count();
  std::lock_guard lk(rate_mu_);
  const int i = int(sec % kRateSecs);
  if (rate_sec_[i] != sec) {
    rate_sec_[i] = sec;
    rate_tok_[i] = 0;
  }
  rate_tok_[i] += tokens;
}

void Engine::loop() {
  bool trim_pending = false;
  for (;;) {
    {
      std::unique_lock lk(mu_);
      auto ready = [&] { return stop_ || !waiting_.empty() || !running_.empty(); };
      if (trim_pending) {
        // Once idle for a moment (the request threads have freed their buffers too), give
        // freed pages back so the idle footprint returns to weights + KV pool.
        if (!cv_.wait_for(lk, std::chrono::milliseconds(200), ready)) {
          trim_pending = false;
#if defined(__GLIBC__)
          malloc_trim(0);
#endif
          continue;
        }
      } else {
        cv_.wait(lk, ready);
      }
      if (stop_) return;
    }
    admit();
    // Cancelled sequences leave before the step, so a disconnect frees its slot within one step.
    Scheduler& sched = runner_.scheduler();
    for (auto& s : running_)
      if (s->out->cancelled()) sched.finish(*s, FinishReason::Cancelled);
    if (!sched.running().empty()) {
      try {
        step();
      } catch (const std::exception& e) {
        for (auto& s : running_) sched.finish(*s, FinishReason::Error, e.what());
      }
    }
    // Finished sequences (cancelled, failed or done in the step) report and leave.
    std::erase_if(running_, [](const std::unique_ptr<Request>& s) {
      if (!s->finished()) return false;
      s->out->push(done_event(s->finish, s->error));
      return true;
    });
    n_running_.store(int64_t(running_.size()));
    n_kv_used_.store(sched.kv_tokens());
    if (running_.empty()) trim_pending = true;
  }
}

void Engine::admit() {
  std::lock_guard lk(mu_);
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->out->cancelled()) {
      (*it)->out->push(done_event(FinishReason::Cancelled));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  Scheduler& sched = runner_.scheduler();
  while (!waiting_.empty() && sched.can_admit()) {
    auto seq = std::move(waiting_.front());
    waiting_.pop_front();
    sched.admit(*seq);
    seq->out->cached_.store(seq->cached);
    n_requests_.fetch_add(1);
    n_prompt_.fetch_add(seq->n_prompt);
    n_cached_.fetch_add(seq->cached);
    running_.push_back(std::move(seq));
  }
  n_running_.store(int64_t(running_.size()));
}

void Engine::step() {
  const std::vector<Produced>& produced = runner_.step(step_opts_);
  n_steps_.store(runner_.steps());
  n_drafted_.store(runner_.spec_stats().drafted);
  n_accepted_.store(runner_.spec_stats().accepted);
  n_verify_steps_.store(runner_.spec_stats().steps);
  for (const Produced& p : produced) {
    const Request& s = static_cast<const Request&>(*p.seq);
    n_completion_.fetch_add(1);  // before the event, so a reader that saw the event sees the count
    GenEvent ev;
    ev.kind = GenEvent::Token;
    ev.token = p.token;
    if (s.top_logprobs >= 0) {
      ev.logprob = s.last_logprob;
      ev.top = s.last_top;
    }
    s.out->push(std::move(ev));
  }
  record_rate(int64_t(produced.size()));
}

}  // namespace fathom
