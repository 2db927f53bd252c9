#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace fathom {

namespace {
// About 50 µs of spinning: long enough to bridge the gap between the sections of a decode
// step, short enough not to burn a core while the pool idles.
constexpr int kSpin = 2000;
}  // namespace

ThreadPool::ThreadPool(int n) {
  if (n <= 0) n = int(std::max(1u, std::thread::hardware_concurrency()));
  n_threads_ = n;
  for (int i = 1; i < n; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_start_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker(int idx) {
  uint64_t seen = 0;
  for (;;) {
    bool ready = false;
    for (int i = 0; i < kSpin && !ready; ++i) {
      ready = generation_.load(std::memory_order_acquire) != seen || stop_.load(std::memory_order_relaxed);
      if (!ready) cpu_relax();
    }
    if (!ready) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_start_.wait(lk, [&] { return stop_ || generation_.load(std::memory_order_acquire) != seen; });
    }
    if (stop_) return;
    seen = generation_.load(std::memory_order_acquire);
    try {
      (*job_)(idx);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!error_) error_ = std::current_exception();
    }
    // The caller mostly spins for the last worker; only one asleep needs the mutex and a
    // notify (taking the mutex every time made the caller block on it, ~2 µs per section).
    if (pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 && caller_asleep_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lk(mu_);
      cv_done_.notify_one();
    }
  }
}

void ThreadPool::run_all(FunctionRef<void(int)> fn) {
  std::lock_guard<std::mutex> call(call_mu_);
  if (n_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  error_ = nullptr;
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(mu_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  cv_start_.notify_all();
  std::exception_ptr mine;
  try {
    fn(0);
  } catch (...) {
    mine = std::current_exception();
  }
  for (int i = 0; i < kSpin && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lk(mu_);
    caller_asleep_.store(true, std::memory_order_seq_cst);  // before the predicate reads pending_
    cv_done_.wait(lk, [&] { return pending_.load(std::memory_order_seq_cst) == 0; });
    caller_asleep_.store(false, std::memory_order_relaxed);
  }
  job_ = nullptr;
  if (mine) std::rethrow_exception(mine);
  // A worker stores error_ before its decrement of pending_, which the loads above acquired.
  if (error_) std::rethrow_exception(error_);
}

void ThreadPool::parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t, int)> fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = std::min<int64_t>(n_threads_, (n + grain - 1) / grain);
  if (chunks <= 1) {
    fn(0, n, 0);
    return;
  }
  run_all([&](int t) {
    if (t >= chunks) return;
    const int64_t b = n * t / chunks, e = n * (t + 1) / chunks;
    if (b < e) fn(b, e, t);
  });
}

}  // namespace fathom
