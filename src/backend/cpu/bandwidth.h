#pragma once
// Memory read bandwidth probe: the roofline that decode (weight streaming) is measured against.
#include <cstddef>

#include "core/thread_pool.h"

namespace fathom::cpu {

// Streams a buffer of `bytes` (choose it well above the last-level cache) with every pool
// thread reading its own contiguous slice, and returns the best of a few runs in GB/s (1e9).
double measure_read_bandwidth_gbs(ThreadPool& pool, size_t bytes = size_t(1) << 30);

}  // namespace fathom::cpu
