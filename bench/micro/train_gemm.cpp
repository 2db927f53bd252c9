// Training GEMMs: the bf16 kernel (train/gemm_bf16.h) against OpenBLAS fp32 sgemm at the
// shapes of a 42M-parameter DeepSeek-V3-like model with 1024 tokens per step, in the three
// layouts a linear layer uses: NT (forward x·Wᵀ), NN (input gradient dy·W), TN (weight
// gradient dyᵀ·x). GFLOP/s counts 2·M·N·K.
// Threads: FATHOM_THREADS (default 1), for both the pool and OpenBLAS.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/random.h"
#include "core/thread_pool.h"
#include "train/blas.h"
#include "train/gemm_bf16.h"

namespace {

using namespace fathom;
using namespace fathom::train;

int bench_threads() {
  const char* s = std::getenv("FATHOM_THREADS");
  return s ? std::max(1, std::atoi(s)) : 1;
}

ThreadPool& pool() {
  static ThreadPool p(bench_threads());
  return p;
}

std::vector<float> rand_vec(size_t n, uint64_t seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(double(splitmix64(seed * 1000003 + i) >> 11) * 0x1.0p-53 * 2 - 1);
  return v;
}

struct Case {
  bool ta, tb;
  int64_t M, N, K;
};

void run(benchmark::State& state, Case c, bool bf16) {
  if (bf16 && !bf16_gemm_supported()) {
    state.SkipWithError("no AVX-512 BF16");
    return;
  }
  blas_threads(bench_threads());
  const auto A = rand_vec(size_t(c.M * c.K), 1), B = rand_vec(size_t(c.K * c.N), 2);
  std::vector<float> C(size_t(c.M * c.N), 0.0f);  // [M,N]
  const int64_t lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
  for (auto _ : state) {
    if (bf16)
      sgemm_bf16(c.ta, c.tb, c.M, c.N, c.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), c.N, &pool());
    else
      sgemm(c.ta, c.tb, c.M, c.N, c.K, 1.0f, A.data(), lda, B.data(), ldb, 0.0f, C.data(), c.N);
    benchmark::DoNotOptimize(C.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * double(c.M) * double(c.N) * double(c.K), benchmark::Counter::kIsIterationInvariantRate,
                         benchmark::Counter::kIs1000);
}

// (M, N, K): projections of width 512 to 1536 and back, the 8192-wide FFN, attention's
// 768/256 projections, one expert's 256 tokens, and weight gradients over 1024 tokens.
const int64_t kShapes[][3] = {{1024, 1536, 512}, {1024, 512, 1536}, {1024, 8192, 512}, {1024, 512, 8192},
                              {8192, 512, 1024}, {1024, 768, 256},  {1024, 256, 512},  {256, 256, 512},
                              {256, 512, 256},   {512, 1536, 1024}};

const bool kRegistered = [] {
  const struct {
    const char* name;
    bool ta, tb;
  } layouts[] = {{"NT", false, true}, {"NN", false, false}, {"TN", true, false}};
  for (const auto& s : kShapes)
    for (const auto& l : layouts)
      for (bool bf16 : {false, true}) {
        const Case c{l.ta, l.tb, s[0], s[1], s[2]};
        const std::string name = std::string(l.name) + "/" + std::to_string(s[0]) + "x" + std::to_string(s[1]) + "x" +
                                 std::to_string(s[2]) + (bf16 ? "/bf16" : "/sgemm");
        benchmark::RegisterBenchmark(name.c_str(), [c, bf16](benchmark::State& st) { run(st, c, bf16); })
            ->Unit(benchmark::kMillisecond)
            ->MinTime(0.2);
      }
  return true;
}();

}  // namespace
