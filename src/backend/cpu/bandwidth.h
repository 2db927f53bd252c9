#pragma once
// Memory read bandwidth probe: the roofline that decode (weight streaming) is measured against.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace fathom::cpu {

struct ReadBandwidth {
  double sustained_gbs = 0;  // every pass's bytes over their total time, GB/s (1e9)
  double best_pass_gbs = 0;  // the fastest single pass
  int passes = 0;
};

// A buffer that every pool thread streams, each its own contiguous region, kept between
// calls so that probes can be interleaved with the work they judge. On a shared machine the
// bandwidth changes from one second to the next (a 2-core cloud guest measured passes of
// 22 to 96 GB/s within 0.3 s, and sits for seconds near one level or another), so a
// workload is only comparable with probes taken in the same moments.
class ReadProbe {
 public:
  // `bytes`: choose it well above the last-level cache. Allocates and fills the buffer.
  ReadProbe(ThreadPool& pool, size_t bytes);
  ~ReadProbe();
  ReadProbe(const ReadProbe&) = delete;
  ReadProbe& operator=(const ReadProbe&) = delete;

  struct Sample {
    double bytes = 0, seconds = 0;
    double best_gbs = 0;  // the fastest slice
  };
  // Reads slices of ~16 MiB, each thread going on where its last slice stopped in its region
  // (wrapping at the end), until at least `min_seconds` have passed; one slice at least.
  // What was read last is long evicted when it comes round again.
  Sample read_for(double min_seconds);
  // One pass over the whole buffer; returns its seconds.
  double pass();

  size_t bytes() const { return per_ * size_t(threads_); }
  size_t resident_bytes() const { return alloc_; }  // all of it is touched when filled

 private:
  double read(size_t per_thread_bytes);

  ThreadPool& pool_;
  int threads_;
  size_t per_ = 0, alloc_ = 0;  // bytes per thread's region; allocated bytes
  uint64_t* base_ = nullptr;
  std::vector<size_t> cursor_;  // [threads] bytes into each region
  std::vector<uint64_t> sink_;  // [threads] keeps the reads observable
};

// Streams a ReadProbe of `bytes` pass after pass for at least `min_seconds` (and 3 passes).
ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, double min_seconds = 1.0);

}  // namespace fathom::cpu
