#include "backend/cpu/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
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

}  // namespace

ReadProbe::ReadProbe(ThreadPool& pool, size_t bytes) : pool_(pool), threads_(pool.size()) {
  per_ = std::max<size_t>(4096, bytes / size_t(threads_) / 4096 * 4096);
  // Huge pages where the kernel grants them, as for fathom's own weights: the probe should
  // see the best the memory system can do.
  constexpr size_t kHuge = size_t(2) << 20;
  alloc_ = (this->bytes() + kHuge - 1) / kHuge * kHuge;
  base_ = static_cast<uint64_t*>(std::aligned_alloc(kHuge, alloc_));
  FATHOM_CHECK(base_ != nullptr, "bandwidth probe: cannot allocate {} bytes", alloc_);
#ifdef MADV_HUGEPAGE
  madvise(base_, alloc_, MADV_HUGEPAGE);
#endif
  // First touch from the thread that will read the region (NUMA placement, no lazy faults),
  // the last thread also the tail up to alloc_, so that all of it is resident. No two pages
  // alike (a hash of the index), so a host that merges identical pages cannot turn the probe
  // into cache reads.
  pool_.run_all([&](int t) {
    const size_t first = per_ / 8 * size_t(t), n = (t == threads_ - 1 ? alloc_ : per_ * size_t(t + 1)) / 8 - first;
    for (size_t i = first; i < first + n; ++i) {
      uint64_t z = i * 0x9e3779b97f4a7c15ull;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      base_[i] = z ^ (z >> 27);
    }
  });
  cursor_.assign(size_t(threads_), 0);
  sink_.assign(size_t(threads_), 0);
}

ReadProbe::~ReadProbe() { std::free(base_); }

double ReadProbe::read(size_t n) {
  const bool simd = cpu_has_avx2();
  const auto t0 = std::chrono::steady_clock::now();
  pool_.run_all([&](int t) {
    const uint64_t* region = base_ + per_ / 8 * size_t(t);
    size_t& c = cursor_[size_t(t)];
    for (size_t left = n; left > 0;) {
      const size_t k = std::min(left, per_ - c);
      sink_[size_t(t)] ^= simd ? read_avx2(region + c / 8, k / 8) : read_scalar(region + c / 8, k / 8);
      c = c + k == per_ ? 0 : c + k;
      left -= k;
    }
  });
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

ReadProbe::Sample ReadProbe::read_for(double min_seconds) {
  const size_t slice = std::min(per_, std::max<size_t>(4096, (size_t(16) << 20) / size_t(threads_) / 4096 * 4096));
  Sample s;
  do {
    const double t = read(slice);
    s.seconds += t;
    s.bytes += double(slice) * threads_;
    s.best_gbs = std::max(s.best_gbs, double(slice) * threads_ / t / 1e9);
  } while (s.seconds < min_seconds);
  return s;
}

double ReadProbe::pass() { return read(per_); }

ReadBandwidth measure_read_bandwidth(ThreadPool& pool, size_t bytes, double min_seconds) {
  ReadProbe probe(pool, bytes);
  ReadBandwidth r;
  double elapsed = 0;
  while (r.passes < 3 || elapsed < min_seconds) {
    const double s = probe.pass();
    r.best_pass_gbs = std::max(r.best_pass_gbs, double(probe.bytes()) / s / 1e9);
    elapsed += s;
    ++r.passes;
  }
  r.sustained_gbs = double(probe.bytes()) * r.passes / elapsed / 1e9;
  return r;
}

}  // namespace fathom::cpu
