#include "runtime/engine.h"

#include <algorithm>

#include "core/error.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace fathom {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Cancelled: return "cancelled";
    case FinishReason::Error: return "error";
    default: return "none";
  }
}

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

struct Engine::Seq {
  std::shared_ptr<GenStream> out;
  GenRequest req;
  std::vector<int32_t> tokens;  // prompt, then generated; tokens[0..pos) are in the slot's KV
  int64_t n_prompt = 0;
  int64_t slot = -1;
  int64_t pos = 0;
  int64_t generated = 0;
  Sampler sampler;
  Seq(GenRequest r, int64_t vocab) : req(std::move(r)), sampler(req.sampling, vocab) {}
};

Engine::Engine(Model& model, const EngineOpts& opts)
    : model_(model), opts_(opts), cache_(model.make_cache(opts.max_batch, opts.max_ctx)),
      vocab_(model.config().vocab_size) {
  if (opts_.max_batch < 1) fail("engine: max_batch must be at least 1");
  if (opts_.max_ctx < 2) fail("engine: the context must hold at least 2 tokens");
  slots_.resize(size_t(opts_.max_batch));
  for (auto& s : slots_) s.cached.reserve(size_t(opts_.max_ctx));
  running_.reserve(size_t(opts_.max_batch));
  batch_.reserve(size_t(opts_.max_batch));
  batch_seqs_.reserve(size_t(opts_.max_batch));
  logits_.resize(size_t(opts_.max_batch * vocab_));
  thread_ = std::thread([this] { loop(); });
}

Engine::~Engine() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  for (auto& s : running_) s->out->push(GenEvent{GenEvent::Done, 0, 0, {}, FinishReason::Cancelled, {}});
  for (auto& s : waiting_) s->out->push(GenEvent{GenEvent::Done, 0, 0, {}, FinishReason::Cancelled, {}});
}

std::shared_ptr<GenStream> Engine::submit(GenRequest req) {
  const int64_t n = int64_t(req.prompt.size());
  if (n == 0) fail("the prompt is empty");
  if (n >= opts_.max_ctx)
    fail("the prompt has {} tokens but the context holds {} (prompt and completion together)", n, opts_.max_ctx);
  for (int32_t t : req.prompt)
    if (t < 0 || t >= vocab_) fail("token id {} is outside the vocabulary (0..{})", t, vocab_ - 1);
  req.max_tokens = std::clamp<int64_t>(req.max_tokens, 1, opts_.max_ctx - n);
  req.top_logprobs = std::min(req.top_logprobs, 20);
  // Requests that free slots will take at once do not count against the queue.
  auto full = [&] {
    const int64_t free_slots = std::max<int64_t>(0, opts_.max_batch - n_running_.load());
    return int64_t(waiting_.size()) >= opts_.max_queue + free_slots;
  };
  {
    std::lock_guard lk(mu_);
    if (full()) throw QueueFull("the request queue is full");
  }
  // The sampler's buffers are allocated here, on the caller's thread, not in the engine loop.
  auto seq = std::make_unique<Seq>(std::move(req), vocab_);
  seq->n_prompt = n;
  seq->tokens.reserve(size_t(n + seq->req.max_tokens));
  seq->tokens = seq->req.prompt;
  seq->sampler.set_want_logprobs(seq->req.top_logprobs >= 0);
  seq->out = std::make_shared<GenStream>();
  seq->out->prompt_tokens_ = n;
  seq->out->events_.reserve(size_t(seq->req.max_tokens + 1));  // every token, then Done
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
    for (auto& s : running_)
      if (s->out->cancelled()) finish(*s, FinishReason::Cancelled);
    std::erase_if(running_, [](const auto& s) { return s->slot < 0; });
    if (!running_.empty()) {
      try {
        step();
      } catch (const std::exception& e) {
        for (auto& s : running_) finish(*s, FinishReason::Error, e.what());
      }
      std::erase_if(running_, [](const auto& s) { return s->slot < 0; });
    }
    n_running_.store(int64_t(running_.size()));
    int64_t used = 0;
    for (auto& s : running_) used += s->pos;
    n_kv_used_.store(used);
    if (running_.empty()) trim_pending = true;
  }
}

static int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return int64_t(i);
}

void Engine::admit() {
  std::lock_guard lk(mu_);
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    if ((*it)->out->cancelled()) {
      (*it)->out->push(GenEvent{GenEvent::Done, 0, 0, {}, FinishReason::Cancelled, {}});
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  while (!waiting_.empty() && int64_t(running_.size()) < opts_.max_batch) {
    auto seq = std::move(waiting_.front());
    waiting_.pop_front();
    // Prefix cache: the free slot whose cached tokens share the longest prefix with the
    // prompt; among equals the least recently used, so recent prefixes survive longer.
    int64_t best = -1, best_lcp = -1;
    for (int64_t i = 0; i < int64_t(slots_.size()); ++i) {
      const Slot& sl = slots_[size_t(i)];
      if (sl.busy) continue;
      const int64_t l = common_prefix(sl.cached, seq->tokens);
      if (l > best_lcp || (l == best_lcp && sl.last_used < slots_[size_t(best)].last_used)) {
        best = i;
        best_lcp = l;
      }
    }
    // At least the last prompt token is recomputed: its logits start the completion.
    const int64_t hit = std::min(best_lcp, seq->n_prompt - 1);
    Slot& sl = slots_[size_t(best)];
    sl.busy = true;
    sl.cached.clear();
    seq->slot = best;
    seq->pos = hit;
    seq->out->cached_.store(hit);
    n_requests_.fetch_add(1);
    n_prompt_.fetch_add(seq->n_prompt);
    n_cached_.fetch_add(hit);
    running_.push_back(std::move(seq));
  }
  n_running_.store(int64_t(running_.size()));
}

void Engine::finish(Seq& s, FinishReason r, const std::string& err) {
  if (s.slot < 0) return;
  Slot& sl = slots_[size_t(s.slot)];
  sl.cached.assign(s.tokens.begin(), s.tokens.begin() + s.pos);
  sl.busy = false;
  sl.last_used = ++clock_;
  s.slot = -1;
  s.out->push(GenEvent{GenEvent::Done, 0, 0, {}, r, err});
}

void Engine::step() {
  batch_.clear();
  batch_seqs_.clear();
  int64_t budget = opts_.step_prefill_budget;
  for (auto& sp : running_) {
    Seq& s = *sp;
    if (s.pos < s.n_prompt) {
      // Prefill: a chunk per step within the step's budget, so decoding sequences keep
      // their pace while a long prompt is read.
      if (budget <= 0) continue;
      const int64_t n = std::min({opts_.prefill_chunk, s.n_prompt - s.pos, budget});
      budget -= n;
      batch_.push_back(SeqChunk{s.slot, s.pos, s.tokens.data() + s.pos, n, false});
    } else {
      batch_.push_back(SeqChunk{s.slot, s.pos, s.tokens.data() + s.pos, 1, false});
    }
    batch_seqs_.push_back(&s);
  }
  if (batch_.empty()) return;
  ForwardOpts fo;
  fo.attn = opts_.attn;
  model_.forward(batch_, cache_, logits_.data(), fo);
  n_steps_.fetch_add(1);

  int64_t produced = 0;
  for (size_t i = 0; i < batch_.size(); ++i) {
    Seq& s = *batch_seqs_[i];
    s.pos += batch_[i].n;
    if (s.pos < s.n_prompt) continue;  // more prompt to read
    float* row = logits_.data() + int64_t(i) * vocab_;
    const int32_t tok = s.sampler.sample(row);
    s.sampler.accept(tok);
    s.tokens.push_back(tok);  // capacity reserved at submit
    ++s.generated;
    ++produced;
    n_completion_.fetch_add(1);  // before the event, so a reader that saw the event sees the count
    GenEvent ev;
    ev.kind = GenEvent::Token;
    ev.token = tok;
    if (s.req.top_logprobs >= 0) {
      const std::vector<float>& lp = s.sampler.last_logprobs();
      ev.logprob = lp[size_t(tok)];
      const int k = s.req.top_logprobs;
      ev.top.reserve(size_t(k));
      for (int64_t v = 0; v < vocab_ && k > 0; ++v) {
        const float x = lp[size_t(v)];
        if (int(ev.top.size()) == k && x <= ev.top.back().logprob) continue;
        auto at = std::find_if(ev.top.begin(), ev.top.end(), [&](const TokenLogprob& t) { return x > t.logprob; });
        ev.top.insert(at, TokenLogprob{int32_t(v), x});
        if (int(ev.top.size()) > k) ev.top.pop_back();
      }
    }
    s.out->push(std::move(ev));
    if (std::find(s.req.stop_ids.begin(), s.req.stop_ids.end(), tok) != s.req.stop_ids.end())
      finish(s, FinishReason::Stop);
    else if (s.generated >= s.req.max_tokens || int64_t(s.tokens.size()) >= opts_.max_ctx)
      finish(s, FinishReason::Length);
  }
  record_rate(produced);
}

}  // namespace fathom
