#include "backend/cpu/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <sys/mman.h>

#include "backend/cpu/matmul.h"
#include "core/error.h"
#include "backend/cpu/simd.h"

namespace fathom::cpu {
namespace {

uint64_t read_scalar(const uint64_t* p, size_t n) {
  uint64_t a = 0, b = 0, c = 0, d = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) { a ^= p[i]; b ^= p[i + 1]; c ^= p[i + 2]; d ^= p[i + 3]; }
  return a ^ b ^ c ^ d;
}

FATHOM_AVX2_BEGIN
// Four independent 256-bit load streams per iteration (128 bytes), xor-folded.
uint64_t read_avx2(const uint64_t* p, size_t n) {
  const __m256i* v = reinterpret_cast<const __m256i*>(p);
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (size_t i = 0; i + 4 <= n / 4; i += 4) {
    a = _mm256_xor_si256(a, _mm256_load_si256(v + i));
    b = _mm256_xor_si256(b, _mm256_load_si256(v + i + 1));
    c = _mm256_xor_si256(c, _mm256_load_si256(v + i + 2));
    d = _mm256_xor_si256(d, _mm256_load_si256(v + i + 3));
  }
  a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
  alignas(32) uint64_t out[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), a);
  return out[0] ^ out[1] ^ out[2] ^ out[3];
}
FATHOM_AVX2_END

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes, double min_seconds) {
  const int T = pool.size();
  const size_t per = std::max<size_t>(4096, bytes / size_t(T) / 4096 * 4096);  // bytes per thread
  const size_t total = per * size_t(T);
  // Huge pages where the kernel grants them, as for fathom's own weights: the probe should
  // see the best the memory system can do.
  constexpr size_t kHuge = size_t(2) << 20;
  const size_t alloc = (total + kHuge - 1) / kHuge * kHuge;
  std::unique_ptr<uint64_t, FreeDeleter> buf(static_cast<uint64_t*>(std::aligned_alloc(kHuge, alloc)));
  FATHOM_CHECK(buf != nullptr, "bandwidth probe: cannot allocate {} bytes", total);
#ifdef MADV_HUGEPAGE
  madvise(buf.get(), alloc, MADV_HUGEPAGE);
#endif
  uint64_t* base = buf.get();
  // First touch from the thread that will read the slice (NUMA placement, no lazy faults).
  // No two pages alike (a hash of the index), so a host that merges identical pages cannot
  // turn the probe into cache reads.
  pool.run_all([&](int t) {
    uint64_t* p = base + per / 8 * size_t(t);
    for (size_t i = 0; i < per / 8; ++i) {
      uint64_t z = (i + per / 8 * size_t(t)) * 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      p[i] = z ^ (z >> 27);
    }
  });
  const bool simd = cpu_has_avx2();
  std::vector<uint64_t> sink(static_cast<size_t>(T));
  ReadBandwidth r;
  double elapsed = 0;
  while (r.passes < 3 || elapsed < min_seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run_all([&](int t) {
      const uint64_t* p = base + per / 8 * size_t(t);
      sink[size_t(t)] ^= simd ? read_avx2(p, per / 8) : read_scalar(p, per / 8);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.best_pass_gbs = std::max(r.best_pass_gbs, double(total) / s / 1e9);
    elapsed += s;
    ++r.passes;
  }
  r.sustained_gbs = double(total) * r.passes / elapsed / 1e9;
  uint64_t x = 0;
  for (uint64_t v : sink) x ^= v;
  // Keeps the reads observable without printing anything.
  if (x == 0x9e3779b97f4a7c15ull) r.best_pass_gbs += 1e-12;
  return r;
}

}  // namespace fathom::cpu
