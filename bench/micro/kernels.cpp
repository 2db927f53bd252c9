// Matmul microbenchmarks at DeepSeek-V2-Lite shapes, plus the read-bandwidth roofline.
//   GEMV (m=1): the weights are replicated past the last-level cache and rotated, so every
//   call streams from DRAM as in decode; bytes/s counts weight bytes.
//   GEMM (m=512): one weight copy; GFLOP/s = 2·m·N·K per second.
// Threads: FATHOM_THREADS (default 2); FATHOM_ISA=avx2|scalar pins the matmul kernels.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/bandwidth.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/packed.h"
#include "backend/cpu/quantize.h"

namespace {

using namespace fathom;
using namespace fathom::cpu;

ThreadPool& pool() {
  static ThreadPool p([] {
    const char* s = std::getenv("FATHOM_THREADS");
    return s ? std::atoi(s) : 2;
  }());
  return p;
}

// FATHOM_ISA=scalar|avx2 pins the kernels (default: the best this CPU has).
Isa isa() {
  const char* s = std::getenv("FATHOM_ISA");
  if (s && std::strcmp(s, "scalar") == 0) return Isa::Scalar;
  if (s && std::strcmp(s, "avx2") == 0) return Isa::Avx2;
  return Isa::Auto;
}

// `copies` identical weight matrices in separate memory, and their views.
struct Weights {
  std::vector<std::vector<uint8_t>> data;
  std::vector<AlignedBytes> packed;  // Packed16 copies of data
  std::vector<float> scale;
  std::vector<WeightView> views;
  size_t bytes = 0;  // of one copy
};

// A format and whether its block weights are packed (Layout::Packed16).
struct Fmt {
  DType t;
  bool pack = false;
};

// GGML block formats have no quantizer in fathom: random block bytes (every bit pattern is a
// valid block) with the f16 scale fields set to a small finite value.
void fill_ggml_random(DType t, std::vector<uint8_t>& bytes) {
  std::mt19937 rng(3);
  for (auto& b : bytes) b = uint8_t(rng());
  std::vector<size_t> f16_at;  // offsets of f16 fields within a block
  switch (t) {
    case DType::Q4_K: case DType::Q5_K: case DType::Q4_1: case DType::Q5_1: f16_at = {0, 2}; break;
    case DType::Q2_K: f16_at = {80, 82}; break;
    case DType::Q3_K: f16_at = {108}; break;
    case DType::Q6_K: f16_at = {208}; break;
    default: f16_at = {0};  // IQ*, Q5_0, IQ4_NL: d first (IQ1_M spreads its scale: not benchmarked)
  }
  const size_t bb = dtype_block_bytes(t);
  const uint16_t small = f32_to_f16(0.01f);
  for (size_t o = 0; o + bb <= bytes.size(); o += bb)
    for (size_t a : f16_at) std::memcpy(bytes.data() + o + a, &small, 2);
}

Weights make_weights(Fmt f, int64_t N, int64_t K, size_t min_total_bytes) {
  const DType t = f.t;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 0.02f);
  std::vector<float> src(size_t(N * K));
  for (auto& f : src) f = dist(rng);
  Weights w;
  w.bytes = dtype_bytes(t, K) * size_t(N);
  std::vector<uint8_t> one(w.bytes);
  switch (t) {
    case DType::F32: std::memcpy(one.data(), src.data(), w.bytes); break;
    case DType::BF16: case DType::F16:
      for (size_t i = 0; i < src.size(); ++i) {
        const uint16_t h = t == DType::BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
        std::memcpy(one.data() + 2 * i, &h, 2);
      }
      break;
    case DType::F8_E4M3:
      w.scale.resize(size_t((N + 127) / 128 * ((K + 127) / 128)));
      quantize_fp8_blocks(src.data(), N, K, one.data(), w.scale.data(), 128, &pool());
      break;
    default:
      if (is_ggml_block(t)) {
        fill_ggml_random(t, one);
        break;
      }
      for (int64_t r = 0; r < N; ++r) quantize_row(t, src.data() + r * K, K, one.data() + size_t(r) * dtype_bytes(t, K));
  }
  const size_t copies = std::max<size_t>(1, (min_total_bytes + w.bytes - 1) / w.bytes);
  for (size_t c = 0; c < copies; ++c) w.data.push_back(one);
  for (auto& d : w.data) {
    WeightView v{t, N, K, d.data(), w.scale.empty() ? nullptr : w.scale.data(), 128};
    if (f.pack) {
      w.packed.push_back(alloc_huge(packed_bytes(t, N, K)));  // as the loader allocates
      v = pack16(v, w.packed.back().get(), &pool());
    }
    w.views.push_back(v);
  }
  if (f.pack) w.data.clear();
  return w;
}

void BM_Gemv(benchmark::State& st, Fmt t) {
  const int64_t N = st.range(0), K = st.range(1);
  const Weights w = make_weights(t, N, K, size_t(256) << 20);
  std::vector<float> x(size_t(K), 0.5f), y(static_cast<size_t>(N));
  size_t i = 0;
  for (auto _ : st) {
    matmul(w.views[i], x.data(), 1, y.data(), pool(), {isa()});
    i = (i + 1) % w.views.size();
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(w.views[0].bytes()));
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(N * K) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// GEMV on one copy that stays in cache: the kernel's compute ceiling.
void BM_GemvHot(benchmark::State& st, Fmt t) {
  const int64_t N = st.range(0), K = st.range(1);
  const Weights w = make_weights(t, N, K, 0);
  std::vector<float> x(size_t(K), 0.5f), y(static_cast<size_t>(N));
  for (auto _ : st) {
    matmul(w.views[0], x.data(), 1, y.data(), pool(), {isa()});
    benchmark::DoNotOptimize(y.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(w.views[0].bytes()));
}

void BM_Gemm(benchmark::State& st, Fmt t) {
  const int64_t N = st.range(0), K = st.range(1), m = st.range(2);
  const Weights w = make_weights(t, N, K, 0);
  std::vector<float> x(size_t(m * K)), y(size_t(m * N));
  std::mt19937 rng(2);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (auto& f : x) f = dist(rng);
  for (auto _ : st) {
    matmul(w.views[0], x.data(), m, y.data(), pool(), {isa()});
    benchmark::DoNotOptimize(y.data());
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(m * N * K) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
}

// Decode roofline: best full pass of GEMVs over 256 MiB of weight copies against the best
// read-bandwidth probe over the same amount of memory, interleaved so that both see the
// same machine state. frac = GEMV weight GB/s ÷ probe GB/s.
void BM_GemvRoofline(benchmark::State& st, Fmt t) {
  const int64_t N = st.range(0), K = st.range(1);
  const Weights w = make_weights(t, N, K, size_t(256) << 20);
  const size_t total = w.views[0].bytes() * w.views.size();
  std::vector<float> x(size_t(K), 0.5f), y(static_cast<size_t>(N));
  double best_gemv = 0, best_bw = 0;
  for (auto _ : st) {
    best_bw = std::max(best_bw, measure_read_bandwidth(pool(), total, 0).best_pass_gbs);
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      for (const auto& v : w.views) matmul(v, x.data(), 1, y.data(), pool(), {isa()});
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best_gemv = std::max(best_gemv, double(total) / sec / 1e9);
    }
  }
  st.counters["gemv_GB/s"] = best_gemv;
  st.counters["read_GB/s"] = best_bw;
  st.counters["frac"] = best_gemv / best_bw;
}

// One GEMV pass over every copy in w, `per` matrices per matmul_many call (a section), all
// on the activation row x; y holds per outputs of w.views[0].rows.
void gemv_sections(const Weights& w, int64_t per, const std::vector<float>& x, std::vector<float>& y,
                   std::vector<MatmulTask>& tasks) {
  const size_t N = size_t(w.views[0].rows);
  for (size_t v0 = 0; v0 < w.views.size(); v0 += size_t(per)) {
    tasks.clear();
    for (size_t v = v0; v < std::min(w.views.size(), v0 + size_t(per)); ++v)
      tasks.push_back({&w.views[v], x.data(), 1, y.data() + (v - v0) * N});
    matmul_many(tasks.data(), tasks.size(), pool(), {isa()});
  }
}

// A decode step's MoE products as fathom issues them: range(2) matrices per matmul_many
// call on one activation row (a section; chunks stolen across threads), against the probe.
void BM_DecodeSectionRoofline(benchmark::State& st, Fmt t) {
  const int64_t N = st.range(0), K = st.range(1), per = st.range(2);
  const Weights w = make_weights(t, N, K, size_t(256) << 20);
  const size_t total = w.views[0].bytes() * w.views.size();
  std::vector<float> x(size_t(K), 0.5f), y(size_t(N * per));
  std::vector<MatmulTask> tasks;
  double best_gemv = 0, best_bw = 0;
  for (auto _ : st) {
    best_bw = std::max(best_bw, measure_read_bandwidth(pool(), total, 0).best_pass_gbs);
    for (int rep = 0; rep < 3; ++rep) {
      const auto t0 = std::chrono::steady_clock::now();
      gemv_sections(w, per, x, y, tasks);
      const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best_gemv = std::max(best_gemv, double(total) / sec / 1e9);
    }
  }
  st.counters["gemv_GB/s"] = best_gemv;
  st.counters["read_GB/s"] = best_bw;
  st.counters["frac"] = best_gemv / best_bw;
}

// The sections of a decode step against the plain-read probe, in alternating slices of
// ~20 ms for 3 s (as fathom bench interleaves its probe with decode steps), so that both see
// the same machine states: this guest's bandwidth switches between levels on a scale of
// seconds. frac = GEMV weight GB/s ÷ probe GB/s, each over the sum of its slices.
void BM_DecodeSectionInterleaved(benchmark::State& st, Fmt t) {
  const int64_t N = st.range(0), K = st.range(1), per = st.range(2);
  const Weights w = make_weights(t, N, K, size_t(256) << 20);
  const size_t total = w.views[0].bytes() * w.views.size();
  ReadProbe probe(pool(), size_t(256) << 20);
  std::vector<float> x(size_t(K), 0.5f), y(size_t(N * per));
  std::vector<MatmulTask> tasks;
  using clock = std::chrono::steady_clock;
  double gemv_sec = 0, gemv_bytes = 0, bw_sec = 0, bw_bytes = 0;
  for (auto _ : st) {
    const auto start = clock::now();
    while (std::chrono::duration<double>(clock::now() - start).count() < 3.0) {
      const ReadProbe::Sample r = probe.read_for(0.02);
      bw_bytes += r.bytes;
      bw_sec += r.seconds;
      const auto t0 = clock::now();
      double sec = 0;
      while (sec < 0.02) {
        gemv_sections(w, per, x, y, tasks);
        gemv_bytes += double(total);
        sec = std::chrono::duration<double>(clock::now() - t0).count();
      }
      gemv_sec += sec;
    }
  }
  st.counters["gemv_GB/s"] = gemv_bytes / gemv_sec / 1e9;
  st.counters["read_GB/s"] = bw_bytes / bw_sec / 1e9;
  st.counters["frac"] = (gemv_bytes / gemv_sec) / (bw_bytes / bw_sec);
}

void BM_ReadBandwidth(benchmark::State& st) {
  double gbs = 0;
  for (auto _ : st) gbs = measure_read_bandwidth(pool(), size_t(st.range(0)) << 20).sustained_gbs;
  st.counters["GB/s"] = gbs;
}

// DeepSeek-V2-Lite: expert up/gate (1408×2048), expert down (2048×1408), and a 16384-row
// slice of the 129280×2048 output head.
void gemv_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1408, 2048})->Args({2048, 1408})->Args({16384, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
}
void gemm_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1408, 2048, 512})->Args({2048, 1408, 512})->Args({1408, 2048, 48})->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_ReadBandwidth)->Arg(1024)->Iterations(1)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvRoofline, q8_0, Fmt{DType::Q8_0})->Args({1408, 2048})->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvRoofline, q4_0, Fmt{DType::Q4_0})->Args({1408, 2048})->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvRoofline, bf16, Fmt{DType::BF16})->Args({1408, 2048})->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_Gemv, q8_0, Fmt{DType::Q8_0})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q4_0, Fmt{DType::Q4_0})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, bf16, Fmt{DType::BF16})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, f16, Fmt{DType::F16})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, f8_e4m3, Fmt{DType::F8_E4M3})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, f32, Fmt{DType::F32})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q8_0, Fmt{DType::Q8_0})->Apply(gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q4_0, Fmt{DType::Q4_0})->Apply(gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, bf16, Fmt{DType::BF16})->Apply(gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, f8_e4m3, Fmt{DType::F8_E4M3})->Apply(gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, f32, Fmt{DType::F32})->Apply(gemm_shapes);
// GGML block formats (GGUF files) as stored: K-quants and IQ2_XXS on rows of 2048, the
// 32-value fallbacks (Q5_0, IQ4_NL) on expert down rows of 1408.
void ggml_gemv_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1408, 2048})->Args({16384, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
}
void ggml_gemm_shapes(benchmark::internal::Benchmark* b) {
  b->Args({1408, 2048, 512})->Args({1408, 2048, 48})->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK_CAPTURE(BM_Gemv, q4_k, Fmt{DType::Q4_K})->Apply(ggml_gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q6_k, Fmt{DType::Q6_K})->Apply(ggml_gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, iq2_xxs, Fmt{DType::IQ2_XXS})->Apply(ggml_gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q2_k, Fmt{DType::Q2_K})->Apply(ggml_gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q3_k, Fmt{DType::Q3_K})->Apply(ggml_gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, iq4_xs, Fmt{DType::IQ4_XS})->Apply(ggml_gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q5_0, Fmt{DType::Q5_0})->Args({2048, 1408})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Gemv, iq4_nl, Fmt{DType::IQ4_NL})->Args({2048, 1408})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Gemm, q4_k, Fmt{DType::Q4_K})->Apply(ggml_gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q6_k, Fmt{DType::Q6_K})->Apply(ggml_gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, iq2_xxs, Fmt{DType::IQ2_XXS})->Apply(ggml_gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q5_0, Fmt{DType::Q5_0})->Args({2048, 1408, 512})->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvHot, q4_k, Fmt{DType::Q4_K})->Args({1408, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvHot, iq2_xxs, Fmt{DType::IQ2_XXS})->Args({1408, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
// Expert-sized matrices, and one output-head-sized stream of about the same total bytes.
BENCHMARK_CAPTURE(BM_GemvRoofline, q8_0_packed, Fmt{DType::Q8_0, true})->Args({1408, 2048})->Args({129280, 2048})->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvRoofline, q4_0_packed, Fmt{DType::Q4_0, true})->Args({1408, 2048})->Args({129280, 2048})->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DecodeSectionRoofline, q8_0_packed, Fmt{DType::Q8_0, true})->Args({1408, 2048, 14})->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DecodeSectionRoofline, q4_0_packed, Fmt{DType::Q4_0, true})->Args({1408, 2048, 14})->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GemvHot, q8_0, Fmt{DType::Q8_0})->Args({1408, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvHot, q4_0, Fmt{DType::Q4_0})->Args({1408, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvHot, q8_0_packed, Fmt{DType::Q8_0, true})->Args({1408, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_GemvHot, q4_0_packed, Fmt{DType::Q4_0, true})->Args({1408, 2048})->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Gemv, q8_0_packed, Fmt{DType::Q8_0, true})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemv, q4_0_packed, Fmt{DType::Q4_0, true})->Apply(gemv_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q8_0_packed, Fmt{DType::Q8_0, true})->Apply(gemm_shapes);
BENCHMARK_CAPTURE(BM_Gemm, q4_0_packed, Fmt{DType::Q4_0, true})->Apply(gemm_shapes);

}  // namespace
// One matrix per section (an attention projection), two, and a decode step's 14 experts;
// the output head.
BENCHMARK_CAPTURE(BM_DecodeSectionInterleaved, q8_0_packed, Fmt{DType::Q8_0, true})->Args({1408, 2048, 1})->Args({1408, 2048, 2})->Args({1408, 2048, 14})->Args({129280, 2048, 1})->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_DecodeSectionInterleaved, q4_0_packed, Fmt{DType::Q4_0, true})->Args({1408, 2048, 1})->Args({1408, 2048, 2})->Args({1408, 2048, 14})->Args({129280, 2048, 1})->Iterations(1)->Unit(benchmark::kMillisecond);
