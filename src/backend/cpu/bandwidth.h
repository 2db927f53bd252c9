#pragma once
// Memory read bandwidth probe: the roofline that decode (weight streaming) is measured against.
#include <cstddef>

#include "core/thread_pool.h"

namespace fathom::cpu {

struct ReadBandwidth {
  double sustained_gbs = 0;  // every pass's bytes over their total time, GB/s (1e9)
  double best_pass_gbs = 0;  // the fastest single pass
  int passes = 0;
};

// Streams a buffer of `bytes` (choose it well above the last-level cache) with every pool
// thread reading its own contiguous slice, pass after pass for at least `min_seconds` (and
// 3 passes). On a shared machine single passes can run far above what the memory sustains
// for a second (a 2-core cloud guest measured passes of 22 to 96 GB/s within 0.3 s), so a
// workload that streams for seconds, like decode, is compared with the sustained figure.
ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes = size_t(1) << 30, double min_seconds = 1.0);

}  // namespace fathom::cpu
