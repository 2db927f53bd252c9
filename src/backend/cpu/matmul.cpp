#include "backend/cpu/matmul.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <tuple>
#include <vector>

#include "backend/cpu/ggml_decode.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/packed.h"
#include "core/error.h"
#include "io/ggml_quants.h"

namespace fathom::cpu {

using detail::kQBlock;

size_t WeightView::bytes() const {
  if (layout == Layout::Packed16) {
    const PackedGeometry g = packed_geometry(dtype, rows, cols);
    return size_t(g.groups * g.group_bytes);
  }
  return row_bytes() * size_t(rows);
}

WeightView slice_rows(const WeightView& w, int64_t r0, int64_t n) {
  FATHOM_CHECK(r0 >= 0 && n >= 0 && r0 + n <= w.rows, "slice_rows: rows [{}, {}) of {}", r0, r0 + n, w.rows);
  WeightView v = w;
  v.rows = n;
  if (w.layout == Layout::Rows) {
    v.data = w.row(r0);
  } else {
    FATHOM_CHECK(r0 % kPackRows == 0 && (n % kPackRows == 0 || r0 + n == w.rows),
                 "slice_rows: rows [{}, {}) split a packed group of 16", r0, r0 + n);
    v.data = static_cast<const uint8_t*>(w.data) + (r0 / kPackRows) * packed_geometry(w.dtype, w.rows, w.cols).group_bytes;
  }
  // FP8 block scales are indexed by row / block, which a slice would shift.
  FATHOM_CHECK(w.block_scale == nullptr || r0 % w.block == 0, "slice_rows: row {} splits an FP8 scale block", r0);
  if (w.block_scale) v.block_scale = w.block_scale + (r0 / w.block) * ((w.cols + w.block - 1) / w.block);
  return v;
}

void dequantize_row(const WeightView& w, int64_t r, float* out) {
  if (w.layout == Layout::Packed16) {
    thread_local std::vector<uint8_t> tmp;  // [row_bytes], grows once per thread
    if (tmp.size() < w.row_bytes()) tmp.resize(w.row_bytes());
    copy_row_blocks(w, r, tmp.data());
    WeightView rw = w;
    rw.layout = Layout::Rows;
    rw.data = tmp.data();
    return dequantize_row(rw, 0, out);
  }
  const uint8_t* p = w.row(r);
  const int64_t K = w.cols;
  switch (w.dtype) {
    case DType::F32:
      std::memcpy(out, p, size_t(K) * 4);
      return;
    case DType::BF16:
      for (int64_t k = 0; k < K; ++k) {
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        out[k] = bf16_to_f32(h);
      }
      return;
    case DType::F16:
      for (int64_t k = 0; k < K; ++k) {
        uint16_t h;
        std::memcpy(&h, p + 2 * k, 2);
        out[k] = f16_to_f32(h);
      }
      return;
    case DType::F8_E4M3: {
      const float* table = detail::fp8_e4m3_table();
      const int64_t sc = (K + w.block - 1) / w.block;
      const float* srow = w.block_scale + (r / w.block) * sc;
      for (int64_t kb = 0; kb < K; kb += w.block) {
        const float s = srow[kb / w.block];
        for (int64_t k = kb; k < std::min(K, kb + w.block); ++k) out[k] = table[p[k]] * s;
      }
      return;
    }
    case DType::Q8_0:
      for (int64_t b = 0; b < K / 32; ++b) {
        const uint8_t* blk = p + b * 34;
        uint16_t h;
        std::memcpy(&h, blk, 2);
        float d = f16_to_f32(h);
        for (int i = 0; i < 32; ++i) out[b * 32 + i] = d * float(int8_t(blk[2 + i]));
      }
      return;
    case DType::Q4_0:
      for (int64_t b = 0; b < K / 32; ++b) {
        const uint8_t* blk = p + b * 18;
        uint16_t h;
        std::memcpy(&h, blk, 2);
        float d = f16_to_f32(h);
        for (int i = 0; i < 16; ++i) {
          out[b * 32 + i] = d * float(int(blk[2 + i] & 15) - 8);
          out[b * 32 + 16 + i] = d * float(int(blk[2 + i] >> 4) - 8);
        }
      }
      return;
    default:
      if (is_ggml_block(w.dtype)) return ggml::dequantize_row(ggml::ggml_type(w.dtype), p, out, K);
      fail("matmul: unsupported weight dtype {}", dtype_name(w.dtype));
  }
}

namespace {
// FATHOM_CPU=scalar|avx2 caps the instruction sets fathom uses below what the CPU has, so
// an AVX-512 machine can run (and be measured on) the AVX2 or scalar kernels end to end.
int isa_cap() {
  static const int cap = [] {
    const char* s = std::getenv("FATHOM_CPU");
    if (s && std::strcmp(s, "scalar") == 0) return 0;
    if (s && std::strcmp(s, "avx2") == 0) return 1;
    return 2;
  }();
  return cap;
}
}  // namespace

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  // F16C comes from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports lacks "f16c".
  static const bool has = isa_cap() >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
  }();
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = isa_cap() >= 2 && cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
  return has;
#else
  return false;
#endif
}

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  // BMI2 (pdep) comes with every such CPU; the GGML kernels' target includes it.
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("bmi2");
  return has;
#else
  return false;
#endif
}

namespace {

// Formats run on quantized activations: fathom's Q8_0/Q4_0 and GGML's block formats.
bool is_quant(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || is_ggml_block(t); }
// Q8_0/Q4_0 rows on AVX2 read the activations as block pairs (kernels.h, QActPair).
bool uses_pairs(const WeightView& w, bool simd) {
  return simd && w.layout == Layout::Rows && (w.dtype == DType::Q8_0 || w.dtype == DType::Q4_0);
}

void check(const WeightView& w) {
  switch (w.dtype) {
    case DType::F32: case DType::F16: case DType::BF16: break;
    case DType::F8_E4M3:
      FATHOM_CHECK(w.block_scale != nullptr, "matmul: F8_E4M3 weight without block scales");
      FATHOM_CHECK(w.block > 0 && w.block % 8 == 0, "matmul: F8_E4M3 block {} is not a multiple of 8", w.block);
      break;
    default:  // block formats: Q8_0/Q4_0 and GGML's
      if (!is_quant(w.dtype)) fail("matmul: unsupported weight dtype {}", dtype_name(w.dtype));
      FATHOM_CHECK(w.cols % dtype_block_values(w.dtype) == 0, "matmul: {} weight with {} columns (not a multiple of {})",
                   dtype_name(w.dtype), w.cols, dtype_block_values(w.dtype));
  }
  // Only fathom's own Q8_0/Q4_0 are ever packed.
  FATHOM_CHECK(w.layout == Layout::Rows || w.dtype == DType::Q8_0 || w.dtype == DType::Q4_0, "matmul: packed {} weight",
               dtype_name(w.dtype));
}

// A decode-sized section (every task a few rows of x) is bound by memory bandwidth, and with
// a static split one thread idles whenever the other's share streams slower, which it often
// does. The section is cut into chunks of ~32 KiB of weights, in task order; thread t owns a
// contiguous share of them and takes its chunks front to back (its reads stay one forward
// stream), then takes single chunks from the back of the share with the most left. Which
// thread computes a column never changes its value.
constexpr int64_t kStreamMaxRows = 4;
constexpr int64_t kChunkBytes = 32 << 10;

struct alignas(64) Share {
  std::atomic<uint64_t> range{0};  // next chunk << 32 | end chunk
};

struct StreamPlan {
  std::vector<int64_t> first;     // [jobs + 1] first chunk of each job
  std::vector<int64_t> rows;      // [jobs] rows per chunk
  std::vector<int64_t> bytes;     // [jobs] weight bytes per chunk
  std::vector<Share> shares;      // [threads]
  // Set once the section's activations are quantized (the threads other than the one that
  // quantizes start reading their weights meanwhile).
  alignas(64) std::atomic<bool> acts_ready{false};

  // The next chunks [c0, c1) of share t (owner), or c0 = -1. Guided: a quarter of what is
  // left at a time, so the per-call work is amortized early and the ends stay fine-grained.
  std::pair<int64_t, int64_t> take_front(int t) {
    std::atomic<uint64_t>& r = shares[size_t(t)].range;
    uint64_t v = r.load(std::memory_order_relaxed);
    for (;;) {
      const uint64_t lo = v >> 32, hi = v & 0xffffffffu;
      if (lo >= hi) return {-1, -1};
      const uint64_t k = std::max<uint64_t>(1, (hi - lo) / 4);
      if (r.compare_exchange_weak(v, ((lo + k) << 32) | hi, std::memory_order_relaxed))
        return {int64_t(lo), int64_t(lo + k)};
    }
  }
  // The last chunk of the share with the most left, or -1 when all are done.
  int64_t take_back() {
    for (;;) {
      int best = -1;
      uint64_t best_left = 0;
      for (size_t i = 0; i < shares.size(); ++i) {
        const uint64_t v = shares[i].range.load(std::memory_order_relaxed);
        const uint64_t lo = v >> 32, hi = v & 0xffffffffu;
        if (hi > lo && hi - lo > best_left) best = int(i), best_left = hi - lo;
      }
      if (best < 0) return -1;
      std::atomic<uint64_t>& r = shares[size_t(best)].range;
      uint64_t v = r.load(std::memory_order_relaxed);
      const uint64_t lo = v >> 32, hi = v & 0xffffffffu;
      if (lo < hi && r.compare_exchange_strong(v, (lo << 32) | (hi - 1), std::memory_order_relaxed))
        return int64_t(hi - 1);
    }
  }
};

// Scratch of the calling thread: grows to the largest call, then never allocates.
struct Scratch {
  std::vector<int8_t> q;                 // quantized activations of every task, [Σ m·K]
  std::vector<float> d;                  // their block scales, [Σ m·K/32]
  std::vector<detail::QActPair> pairs;   // AVX2 layout, [Σ m·ceil(K/64)]
  std::vector<int32_t> ncorr;            // Packed16 -offset·Σq, [Σ m·K/32]
  std::vector<int16_t> g16;              // GGML formats: Σq per 16 values, [Σ m·K/16]
  std::vector<detail::Job> jobs;         // one per task
  std::vector<uint8_t> shares_acts;      // [jobs] 1: uses the previous job's quantized x
  StreamPlan plan;                       // streaming sections
};

using ColsFn = void (*)(const detail::Job&, int64_t, int64_t);
using QuantRowFn = void (*)(const float*, int64_t, int8_t*, float*, int32_t*);

// One parallel section over all tasks: thread t quantizes its share of the activation rows
// (phase 0) or computes part t of every task's columns (phase 1).
struct Section {
  const detail::Job* jobs;
  size_t n_jobs;
  bool simd;
  bool vnni;  // Packed16 weights run the AVX-512 VNNI kernel
  QuantRowFn quant_row;
  int parts;
  int64_t quant_rows;  // Σ m over the quantized tasks that own their activations
  const uint8_t* shares_acts;  // [n_jobs]
  // Streaming sections only (see StreamPlan): null otherwise.
  const StreamPlan* stream = nullptr;
};

// Part t of [0, n) in `parts` ranges, boundaries rounded down to multiples of `align`.
std::pair<int64_t, int64_t> part(int64_t n, int parts, int t, int64_t align) {
  auto at = [&](int64_t i) { return i >= parts ? n : (n * i / parts) / align * align; };
  return {at(t), at(t + 1)};
}

void quantize_part(const Section& s, int t) {
  const auto [b, e] = part(s.quant_rows, s.parts, t, 1);
  int64_t base = 0;  // first global row of the current job
  for (size_t j = 0; j < s.n_jobs && base < e; ++j) {
    const detail::Job& job = s.jobs[j];
    if (!job.qa.q || s.shares_acts[j]) continue;
    const int64_t K = job.w->cols, nb = K / kQBlock, np = (nb + 1) / 2;
    for (int64_t i = std::max<int64_t>(b - base, 0); i < std::min<int64_t>(e - base, job.m); ++i) {
      int8_t* q = const_cast<int8_t*>(job.qa.q) + i * K;
      float* d = const_cast<float*>(job.qa.d) + i * nb;
      int32_t* c = job.qa.ncorr ? const_cast<int32_t*>(job.qa.ncorr) + i * nb : nullptr;
      if (job.qa.g16) {  // GGML formats: blocks of the weight format, one quantizer for every kernel
        const int nv = dtype_block_values(job.w->dtype);
        (s.simd ? detail::quantize_acts_ggml_avx2 : detail::quantize_acts_ggml)(
            job.x + i * K, K, nv, q, const_cast<float*>(job.qa.d) + i * (K / nv), const_cast<int16_t*>(job.qa.g16) + i * (K / 16));
        continue;
      }
      s.quant_row(job.x + i * K, K, q, d, c);  // c: Σq per block, then -offset·Σq
      if (job.qa.pairs) detail::build_act_pairs(q, d, nb, const_cast<detail::QActPair*>(job.qa.pairs) + i * np);
      if (c) {
        const int32_t offset = packed_geometry(job.w->dtype, 1, K).offset;
        for (int64_t b2 = 0; b2 < nb; ++b2) c[b2] *= -offset;
      }
    }
    base += job.m;
  }
}

ColsFn cols_fn(const Section& s, const detail::Job& job) {
  if (job.w->layout == Layout::Packed16)
    return s.vnni ? detail::run_cols_packed_vnni : s.simd ? detail::run_cols_packed_avx2 : detail::run_cols_packed_scalar;
  if (is_ggml_block(job.w->dtype))
    return s.vnni ? detail::run_cols_ggml_vnni : s.simd ? detail::run_cols_ggml_avx2 : detail::run_cols_ggml_scalar;
  if (!s.simd) return detail::run_cols_scalar;
  return is_quant(job.w->dtype) ? detail::run_cols_quant_avx2 : detail::run_cols_float_avx2;
}

// Chunks [c0, c1): one kernel call per job they cover.
void run_chunks(const Section& s, int64_t c0, int64_t c1) {
  const StreamPlan& p = *s.stream;
  size_t j = size_t(std::upper_bound(p.first.begin(), p.first.end(), c0) - p.first.begin()) - 1;
  for (; c0 < c1; ++j) {
    const int64_t e = std::min(c1, p.first[j + 1]);
    const detail::Job& job = s.jobs[j];
    const int64_t r0 = (c0 - p.first[j]) * p.rows[j], r1 = std::min(job.w->rows, (e - p.first[j]) * p.rows[j]);
    cols_fn(s, job)(job, r0, r1);
    c0 = e;
  }
}

// Thread t's first weights, pulled toward its cache while the activations are quantized
// elsewhere: up to kEarlyBytes from the start of its share, stopping once they are ready.
constexpr int64_t kEarlyBytes = 64 << 10;

void prefetch_share_start(const Section& s, int t) {
  const StreamPlan& p = *s.stream;
  const int64_t c = int64_t(p.shares[size_t(t)].range.load(std::memory_order_relaxed) >> 32);
  if (c >= p.first.back()) return;
  const size_t j = size_t(std::upper_bound(p.first.begin(), p.first.end(), c) - p.first.begin()) - 1;
  const WeightView& w = *s.jobs[j].w;
  const int64_t off = (c - p.first[j]) * p.bytes[j];
  const int64_t n = std::min<int64_t>(kEarlyBytes, int64_t(w.bytes()) - off);
  const char* base = static_cast<const char*>(w.data) + off;
  for (int64_t i = 0; i < n; i += 64) {
    if (i % 1024 == 0 && p.acts_ready.load(std::memory_order_relaxed)) return;
    __builtin_prefetch(base + i, 0, 3);
  }
}

void stream_part(const Section& s, int t) {
  StreamPlan& p = *const_cast<StreamPlan*>(s.stream);
  for (auto [c0, c1] = p.take_front(t); c0 >= 0; std::tie(c0, c1) = p.take_front(t)) run_chunks(s, c0, c1);
  for (int64_t c; (c = p.take_back()) >= 0;) run_chunks(s, c, c + 1);
}

// Thread t computes part t of every job's columns (static: each thread's thread-local
// scratch is sized by the warm-up call, so later calls allocate nothing).
void cols_part(const Section& s, int t) {
  if (s.stream) return stream_part(s, t);
  for (size_t j = 0; j < s.n_jobs; ++j) {
    const detail::Job& job = s.jobs[j];
    const int64_t N = job.w->rows;
    const int parts = int(std::min<int64_t>(s.parts, std::max<int64_t>(1, N / 8)));
    if (t >= parts) continue;
    const auto [b, e] = part(N, parts, t, job.w->layout == Layout::Packed16 ? kPackRows : 4);
    if (b < e) cols_fn(s, job)(job, b, e);
  }
}

}  // namespace

void matmul_many(const MatmulTask* tasks, size_t n, ThreadPool& pool, const MatmulOpts& opts) {
  FATHOM_CHECK(!(opts.isa == Isa::Avx2 && !cpu_has_avx2()), "matmul: AVX2 requested but this CPU lacks AVX2/FMA/F16C");
  FATHOM_CHECK(!(opts.isa == Isa::Avx512 && !cpu_has_avx512_vnni()),
               "matmul: AVX-512 VNNI requested but this CPU lacks it");
  const bool simd = opts.isa == Isa::Avx2 || opts.isa == Isa::Avx512 || (opts.isa == Isa::Auto && cpu_has_avx2());
  const bool vnni = opts.isa == Isa::Avx512 || (opts.isa == Isa::Auto && cpu_has_avx512_vnni());
  thread_local Scratch scratch;
  // Sizes first, so the scratch grows at most once per call and the pointers stay valid.
  size_t nq = 0, nd = 0, np = 0, nc = 0, ns = 0;
  int64_t work = 0, max_m = 0;
  for (size_t j = 0; j < n; ++j) {
    const MatmulTask& t = tasks[j];
    check(*t.w);
    if (t.m <= 0) continue;
    max_m = std::max(max_m, t.m);
    work += t.m * t.w->rows * std::max<int64_t>(t.w->cols, 1);
    if (!is_quant(t.w->dtype)) continue;
    const int64_t K = t.w->cols, nb = K / kQBlock;
    const bool packed = t.w->layout == Layout::Packed16;
    nq += size_t(t.m * K), nd += size_t(t.m * nb);
    np += uses_pairs(*t.w, simd) ? size_t(t.m * ((nb + 1) / 2)) : 0;
    nc += packed ? size_t(t.m * nb) : 0;
    ns += is_ggml_block(t.w->dtype) ? size_t(t.m * (K / 16)) : 0;
  }
  if (scratch.q.size() < nq) scratch.q.resize(nq);
  if (scratch.d.size() < nd) scratch.d.resize(nd);
  if (scratch.pairs.size() < np) scratch.pairs.resize(np);
  if (scratch.ncorr.size() < nc) scratch.ncorr.resize(nc);
  if (scratch.g16.size() < ns) scratch.g16.resize(ns);
  if (scratch.jobs.size() < n) scratch.jobs.resize(n), scratch.shares_acts.resize(n);
  size_t n_jobs = 0;
  nq = nd = np = nc = ns = 0;
  int64_t quant_rows = 0, quant_elems = 0;  // of the tasks that own their activations
  // Consecutive tasks on the same input in the same activation layout (an MLP's gate and up,
  // a decode step's experts) quantize it once.
  auto same_acts = [simd](const detail::Job& a, const detail::Job& b) {
    const bool pa = a.w->layout == Layout::Packed16, pb = b.w->layout == Layout::Packed16;
    return a.qa.q && a.x == b.x && a.m == b.m && a.w->cols == b.w->cols && pa == pb &&
           (!pa || a.w->dtype == b.w->dtype) && uses_pairs(*a.w, simd) == uses_pairs(*b.w, simd) &&
           is_ggml_block(a.w->dtype) == is_ggml_block(b.w->dtype) &&
           (!is_ggml_block(a.w->dtype) || dtype_block_values(a.w->dtype) == dtype_block_values(b.w->dtype));
  };
  for (size_t j = 0; j < n; ++j) {
    const MatmulTask& t = tasks[j];
    if (t.m <= 0 || t.w->rows <= 0) continue;
    detail::Job job{t.w, t.x, {}, t.m, t.y};
    scratch.shares_acts[n_jobs] = 0;
    if (is_quant(t.w->dtype)) {
      const int64_t K = t.w->cols, nb = K / kQBlock;
      const bool packed = t.w->layout == Layout::Packed16;
      if (n_jobs > 0 && same_acts(scratch.jobs[n_jobs - 1], job)) {
        job.qa = scratch.jobs[n_jobs - 1].qa;
        scratch.shares_acts[n_jobs] = 1;
      } else {
        const bool ggml = is_ggml_block(t.w->dtype), pairs = uses_pairs(*t.w, simd);
        job.qa = {scratch.q.data() + nq, scratch.d.data() + nd, pairs ? scratch.pairs.data() + np : nullptr,
                  packed ? scratch.ncorr.data() + nc : nullptr, ggml ? scratch.g16.data() + ns : nullptr};
        nq += size_t(t.m * K), nd += size_t(t.m * nb);
        np += pairs ? size_t(t.m * ((nb + 1) / 2)) : 0;
        nc += packed ? size_t(t.m * nb) : 0;
        ns += ggml ? size_t(t.m * (K / 16)) : 0;
        quant_rows += t.m;
        quant_elems += t.m * K;
      }
    }
    scratch.jobs[n_jobs++] = job;
  }
  if (n_jobs == 0) return;

  // Small products are not worth waking the pool (results do not depend on it anyway).
  const int threads = work < (int64_t(1) << 16) ? 1 : pool.size();
  Section sec{scratch.jobs.data(), n_jobs, simd, vnni,
              simd ? detail::quantize_act_row_avx2 : detail::quantize_act_row_scalar, threads, quant_rows,
              scratch.shares_acts.data()};
  const Section* sp = &sec;
  // A section of its own for the activations only where they are worth it (~8 µs of work on
  // one thread): a decode step's per-head products (16 rows of 128 or 512) are not. Smaller
  // ones are quantized by thread 0 of the streaming section (below), or inline.
  const bool quant_section = quant_rows > 0 && quant_elems >= (int64_t(1) << 14) && threads > 1;
  const bool streaming = threads > 1 && max_m <= kStreamMaxRows;
  if (quant_section) pool.run_all([sp](int t) { quantize_part(*sp, t); });
  else if (quant_rows > 0 && !streaming) {
    sec.parts = 1;
    quantize_part(sec, 0);
    sec.parts = threads;
  }
  if (streaming) {
    StreamPlan& p = scratch.plan;
    p.first.assign(1, 0);
    p.rows.clear();
    p.bytes.clear();
    for (size_t j = 0; j < n_jobs; ++j) {
      const WeightView& w = *scratch.jobs[j].w;
      const bool packed = w.layout == Layout::Packed16;
      const int64_t unit = packed ? kPackRows : 4;  // rows a chunk boundary may fall on
      const int64_t unit_bytes =
          packed ? packed_geometry(w.dtype, w.rows, w.cols).group_bytes : int64_t(w.row_bytes()) * unit;
      const int64_t rows = std::max<int64_t>(1, kChunkBytes / std::max<int64_t>(unit_bytes, 1)) * unit;
      p.rows.push_back(rows);
      p.bytes.push_back(rows / unit * unit_bytes);
      p.first.push_back(p.first.back() + (w.rows + rows - 1) / rows);
    }
    const int64_t C = p.first.back();
    FATHOM_CHECK(C < (int64_t(1) << 32), "matmul: {} chunks in one section", C);
    if (p.shares.size() != size_t(threads)) p.shares = std::vector<Share>(size_t(threads));
    for (int t = 0; t < threads; ++t)
      p.shares[size_t(t)].range.store(uint64_t(C * t / threads) << 32 | uint64_t(C * (t + 1) / threads),
                                      std::memory_order_relaxed);
    sec.stream = &p;
    if (quant_rows > 0 && !quant_section) {
      // Thread 0 quantizes the activations while the others start on their weights.
      p.acts_ready.store(false, std::memory_order_relaxed);
      pool.run_all([sp](int t) {
        StreamPlan& sp_plan = *const_cast<StreamPlan*>(sp->stream);
        if (t == 0) {
          Section one = *sp;
          one.parts = 1;
          struct Ready {  // set even if quantizing threw, or the others would wait forever
            std::atomic<bool>& f;
            ~Ready() { f.store(true, std::memory_order_release); }
          } ready{sp_plan.acts_ready};
          quantize_part(one, 0);
        } else {
          prefetch_share_start(*sp, t);
          // A few µs of spinning; beyond that thread 0 was preempted, so give the core up.
          for (int i = 0; !sp_plan.acts_ready.load(std::memory_order_acquire); ++i)
            if (i < 4096) cpu_relax();
            else std::this_thread::yield();
        }
        cols_part(*sp, t);
      });
      return;
    }
  }
  if (threads > 1) pool.run_all([sp](int t) { cols_part(*sp, t); });
  else cols_part(sec, 0);
}

void matmul(const WeightView& w, const float* x, int64_t m, float* y, ThreadPool& pool,
            const MatmulOpts& opts) {
  const MatmulTask task{&w, x, m, y};
  matmul_many(&task, 1, pool, opts);
}

}  // namespace fathom::cpu
