// matmul must not allocate once its scratch has grown to the call's size.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "weights.h"

// Replacement allocation functions pair malloc with free; GCC cannot see that.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<long> g_allocs{0};
}

void* operator new(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace fathom::cpu {
namespace {

TEST(Matmul, NoAllocationPerCall) {
  const int64_t N = 96, K = 256, m = 9;
  ThreadPool pool(2);
  const auto x = testing::random_floats(size_t(m * K), 1);
  std::vector<float> y(static_cast<size_t>(m * N));
  for (DType t : {DType::F32, DType::BF16, DType::F16, DType::F8_E4M3, DType::Q8_0, DType::Q4_0}) {
    const auto w = testing::encode(t, testing::random_floats(size_t(N * K), 2), N, K);
    for (Isa isa : {Isa::Scalar, Isa::Avx2}) {
      if (isa == Isa::Avx2 && !cpu_has_avx2()) continue;
      for (int64_t rows : {m, int64_t(1)}) {
        matmul(w.view(), x.data(), rows, y.data(), pool, {isa});  // warm-up grows the scratch
        const long before = g_allocs.load();
        matmul(w.view(), x.data(), rows, y.data(), pool, {isa});
        EXPECT_EQ(g_allocs.load() - before, 0) << dtype_name(t) << " m=" << rows;
      }
    }
  }
}

}  // namespace
}  // namespace fathom::cpu
