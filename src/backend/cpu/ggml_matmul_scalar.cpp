// Scalar kernel for GGML block formats: each weight row is decoded block by block
// (ggml_decode.h) and dotted with every row of x in the fixed order the header defines; the
// AVX2 kernel (ggml_avx2.cpp) mirrors it bit for bit.
#include <cmath>
#include <vector>

#include "backend/cpu/ggml_decode.h"
#include "backend/cpu/kernels.h"

namespace fathom::cpu::detail {
namespace {

// One decoded block (nv values) against one row's activations from the same offset.
void block_dot(const int8_t* q, const float* a, const float* mn, int nv, bool mins, const int8_t* xq,
               const float* xd, const int32_t* xs16, float f[8], float& m) {
  for (int g = 0; g < nv / 32; ++g) {
    const float dx = xd[g];
    for (int j = 0; j < 8; ++j) {
      int32_t s = 0;
      for (int e = 0; e < 4; ++e) s += int32_t(q[32 * g + 4 * j + e]) * int32_t(xq[32 * g + 4 * j + e]);
      f[j] = std::fma(float(s), dx * a[2 * g + j / 4], f[j]);
    }
    if (mins)
      for (int h = 0; h < 2; ++h) m = std::fma(dx * mn[2 * g + h], float(xs16[2 * g + h]), m);
  }
}

}  // namespace

void run_cols_ggml_scalar(const Job& job, int64_t n0, int64_t n1) {
  const WeightView& w = *job.w;
  const DType t = w.dtype;
  const int64_t K = w.cols, N = w.rows, m = job.m;
  const int nv = dtype_block_values(t);
  const size_t bb = dtype_block_bytes(t);
  const int64_t nblk = K / nv;
  const bool mins = ggml_has_mins(t);
  thread_local std::vector<float> acc;  // [m, 9]: 8 lanes and the mins term per row of x
  acc.assign(size_t(m * 9), 0.0f);
  DecodedBlock blk;
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    const uint8_t* row = w.row(n);
    for (int64_t kb = 0; kb < nblk; ++kb) {
      decode_block_scalar(t, row + size_t(kb) * bb, blk);
      for (int64_t i = 0; i < m; ++i)
        block_dot(blk.q, blk.a, blk.mn, nv, mins, job.qa.q + i * K + kb * nv, job.qa.d + (i * K + kb * nv) / 32,
                  mins ? job.qa.s16 + (i * K + kb * nv) / 16 : nullptr, &acc[size_t(i * 9)], acc[size_t(i * 9 + 8)]);
    }
    for (int64_t i = 0; i < m; ++i) job.y[i * N + n] = hsum8(&acc[size_t(i * 9)]) - acc[size_t(i * 9 + 8)];
  }
}

}  // namespace fathom::cpu::detail
