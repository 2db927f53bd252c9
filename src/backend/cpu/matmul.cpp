#include "backend/cpu/matmul.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace fathom::cpu {

using detail::kQBlock;

void dequantize_row(const WeightView& w, int64_t r, float* out) {
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
      fail("matmul: unsupported weight dtype {}", dtype_name(w.dtype));
  }
}

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  // F16C comes from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports lacks "f16c".
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
  }();
  return has;
#else
  return false;
#endif
}

namespace {

bool is_quant(DType t) { return t == DType::Q8_0 || t == DType::Q4_0; }

void check(const WeightView& w) {
  switch (w.dtype) {
    case DType::F32: case DType::F16: case DType::BF16: break;
    case DType::F8_E4M3:
      FATHOM_CHECK(w.block_scale != nullptr, "matmul: F8_E4M3 weight without block scales");
      FATHOM_CHECK(w.block > 0 && w.block % 8 == 0, "matmul: F8_E4M3 block {} is not a multiple of 8", w.block);
      break;
    case DType::Q8_0: case DType::Q4_0:
      FATHOM_CHECK(w.cols % kQBlock == 0, "matmul: {} weight with {} columns (not a multiple of 32)",
                   dtype_name(w.dtype), w.cols);
      break;
    default: fail("matmul: unsupported weight dtype {}", dtype_name(w.dtype));
  }
}

// Activation scratch of the calling thread: grows to the largest call, then never allocates.
struct ActScratch {
  std::vector<int8_t> q;  // [m, K]
  std::vector<float> d;   // [m, K/32]
  std::vector<detail::QActPair> pairs;  // [m, ceil(K/64)]
};

using ColsFn = void (*)(const detail::Job&, int64_t, int64_t);
using QuantRowFn = void (*)(const float*, int64_t, int8_t*, float*);

struct Call {
  const detail::Job* job;
  ColsFn cols;
  QuantRowFn quant_row;
  int64_t n, parts;  // items (columns or rows) split into `parts` contiguous ranges
  int64_t align;     // range boundaries rounded down to multiples of this
};

// Range [b, e) of part t; boundaries aligned so that tiles rarely straddle threads.
std::pair<int64_t, int64_t> part(const Call& c, int t) {
  auto at = [&](int64_t i) { return i >= c.parts ? c.n : (c.n * i / c.parts) / c.align * c.align; };
  return {at(t), at(t + 1)};
}

}  // namespace

void matmul(const WeightView& w, const float* x, int64_t m, float* y, ThreadPool& pool,
            const MatmulOpts& opts) {
  check(w);
  if (m <= 0 || w.rows <= 0) return;
  const int64_t N = w.rows, K = w.cols;
  const bool simd = opts.isa == Isa::Avx2 || (opts.isa == Isa::Auto && cpu_has_avx2());
  FATHOM_CHECK(!(opts.isa == Isa::Avx2 && !cpu_has_avx2()), "matmul: AVX2 requested but this CPU lacks AVX2/FMA/F16C");

  detail::Job job{&w, x, {}, m, y};
  Call call{&job, nullptr, nullptr, 0, 1, 1};
  // Small products are not worth waking the pool (results do not depend on it anyway).
  const int64_t work = m * N * std::max<int64_t>(K, 1);
  const int threads = work < (int64_t(1) << 16) ? 1 : pool.size();

  if (is_quant(w.dtype)) {
    thread_local ActScratch scratch;
    const int64_t nb = K / kQBlock;
    if (scratch.q.size() < size_t(m * K)) scratch.q.resize(size_t(m * K));
    if (scratch.d.size() < size_t(m * nb)) scratch.d.resize(size_t(m * nb));
    const bool pairs = simd;
    const int64_t np = (nb + 1) / 2;
    if (pairs && scratch.pairs.size() < size_t(m * np)) scratch.pairs.resize(size_t(m * np));
    job.qa = {scratch.q.data(), scratch.d.data(), pairs ? scratch.pairs.data() : nullptr};
    call.quant_row = simd ? detail::quantize_act_row_avx2 : detail::quantize_act_row_scalar;
    call.n = m;
    call.parts = m >= 8 ? threads : 1;
    auto quant = [](const Call& c, int t) {
      const auto [b, e] = part(c, t);
      const int64_t K = c.job->w->cols, nb = K / kQBlock;
      for (int64_t i = b; i < e; ++i) {
        int8_t* q = const_cast<int8_t*>(c.job->qa.q) + i * K;
        float* d = const_cast<float*>(c.job->qa.d) + i * nb;
        c.quant_row(c.job->x + i * K, K, q, d);
        if (c.job->qa.pairs)
          detail::build_act_pairs(q, d, nb, const_cast<detail::QActPair*>(c.job->qa.pairs) + i * ((nb + 1) / 2));
      }
    };
    if (call.parts == 1) {
      quant(call, 0);
    } else {
      const Call* cp = &call;
      pool.run_all([cp, quant](int t) { quant(*cp, t); });
    }
    call.cols = simd ? detail::run_cols_quant_avx2 : detail::run_cols_scalar;
  } else {
    call.cols = simd ? detail::run_cols_float_avx2 : detail::run_cols_scalar;
  }

  call.n = N;
  call.parts = std::min<int64_t>(threads, std::max<int64_t>(1, N / 8));
  call.align = 4;
  auto cols = [](const Call& c, int t) {
    if (t >= c.parts) return;
    const auto [b, e] = part(c, t);
    if (b < e) c.cols(*c.job, b, e);
  };
  if (call.parts == 1) {
    cols(call, 0);
  } else {
    const Call* cp = &call;
    pool.run_all([cp, cols](int t) { cols(*cp, t); });
  }
}

}  // namespace fathom::cpu
