#pragma once
// A fixed pool of worker threads for data-parallel loops. The calling thread takes part,
// so a pool of N threads starts N-1 workers. Workers spin briefly before sleeping, because
// a decode step issues hundreds of short parallel sections; no allocation per call.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "core/function_ref.h"

namespace fathom {

// One step of a spin-wait: tells the core (and a hypervisor) that this thread is waiting.
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads = 0);  // 0: hardware concurrency
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end, thread_index) over [0, n) split into contiguous chunks of at least
  // `grain` items; one chunk per thread at most. Blocks until all are done.
  // Exceptions in fn are rethrown on the caller. Not reentrant: fn must not use the pool.
  void parallel_for(int64_t n, int64_t grain, FunctionRef<void(int64_t, int64_t, int)> fn);

  // Calls fn(thread_index) once on every thread of the pool.
  void run_all(FunctionRef<void(int)> fn);

 private:
  void worker(int idx);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_, cv_done_;
  const FunctionRef<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> caller_asleep_{false};  // the caller waits on cv_done_
  std::atomic<bool> stop_{false};
  std::exception_ptr error_;
  std::mutex call_mu_;  // one parallel section at a time
};

}  // namespace fathom
