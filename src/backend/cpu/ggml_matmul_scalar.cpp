// Scalar kernel for GGML block formats: each weight row is decoded block by block
// (ggml_decode.h) and dotted with every row of x in the order that header defines; the
// AVX2 kernel (ggml_avx2.cpp) mirrors it bit for bit.
#include <cmath>
#include <vector>

#include "backend/cpu/ggml_decode.h"
#include "backend/cpu/kernels.h"

namespace fathom::cpu::detail {
namespace {

// One decoded block (nv values) against one row's activations from the same offset.
void block_dot(const DecodedBlock& b, int nv, bool mins, const int8_t* xq, float dx, const int16_t* xs16, float f[8],
               float mf[8]) {
  int32_t S[8] = {};
  for (int g = 0; g < nv / 32; ++g)
    for (int j = 0; j < 8; ++j) {
      int32_t s = 0;
      for (int e = 0; e < 4; ++e) s += int32_t(b.q[32 * g + 4 * j + e]) * int32_t(xq[32 * g + 4 * j + e]);
      S[j] += int32_t(b.sc[2 * g + j / 4]) * s;
    }
  for (int j = 0; j < 8; ++j) f[j] = std::fma(float(S[j]), dx * b.d, f[j]);
  if (!mins) return;
  for (int j = 0; j < 8 && 2 * j < nv / 16; ++j) {
    const int32_t M = int32_t(b.mi[2 * j]) * xs16[2 * j] + int32_t(b.mi[2 * j + 1]) * xs16[2 * j + 1];
    mf[j] = std::fma(float(M), dx * b.dmin, mf[j]);
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
  const bool mins = ggml_mins(t);
  thread_local std::vector<float> acc;  // [m, 16]: 8 lanes of f, then 8 of mf, per row of x
  acc.resize(size_t(m * 16));
  DecodedBlock blk;
  for (int64_t n = n0; n < n1; ++n) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    const uint8_t* row = w.row(n);
    for (int64_t kb = 0; kb < nblk; ++kb) {
      decode_block_scalar(t, row + size_t(kb) * bb, blk);
      for (int64_t i = 0; i < m; ++i) {
        float* a = &acc[size_t(i * 16)];
        block_dot(blk, nv, mins, job.qa.q + i * K + kb * nv, job.qa.d[i * nblk + kb],
                  job.qa.g16 + (i * K + kb * nv) / 16, a, a + 8);
      }
    }
    for (int64_t i = 0; i < m; ++i) {
      const float* a = &acc[size_t(i * 16)];
      job.y[i * N + n] = mins ? hsum8(a) - hsum8(a + 8) : hsum8(a);
    }
  }
}

}  // namespace fathom::cpu::detail
