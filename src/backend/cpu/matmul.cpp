#include "backend/cpu/matmul.h"

#include <vector>

#include "core/error.h"

namespace fathom::cpu {

void dequantize_row(const WeightView& w, int64_t r, float* out) {
  const uint8_t* p = w.row(r);
  const int64_t K = w.cols;
  switch (w.dtype) {
    case DType::F32:
      for (int64_t k = 0; k < K; ++k) std::memcpy(&out[k], p + 4 * k, 4);
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
      const int64_t sc = (K + w.block - 1) / w.block;
      const float* srow = w.block_scale + (r / w.block) * sc;
      for (int64_t k = 0; k < K; ++k) out[k] = fp8_e4m3_to_f32(p[k]) * srow[k / w.block];
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
#if defined(__x86_64__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// Scalar path: dequantize each weight row once, then dot it with every input row.
static void matmul_scalar(const WeightView& w, const float* x, int64_t m, float* y, ThreadPool& pool) {
  const int64_t N = w.rows, K = w.cols;
  pool.parallel_for(N, 16, [&](int64_t n0, int64_t n1, int) {
    std::vector<float> wr(size_t(K));  // [K]
    for (int64_t n = n0; n < n1; ++n) {
      dequantize_row(w, n, wr.data());
      for (int64_t i = 0; i < m; ++i) {
        const float* xi = x + i * K;
        float s = 0.f;
        for (int64_t k = 0; k < K; ++k) s += xi[k] * wr[k];
        y[i * N + n] = s;
      }
    }
  });
}

void matmul(const WeightView& w, const float* x, int64_t m, float* y, ThreadPool& pool,
            const MatmulOpts& opts) {
  matmul_scalar(w, x, m, y, pool);
}

}  // namespace fathom::cpu
