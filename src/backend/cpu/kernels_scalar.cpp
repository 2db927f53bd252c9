// Portable kernels. They mirror the AVX2 arithmetic lane by lane (8 lane accumulators over
// K, the same horizontal sum, the same int32 block sums), differing only in that the
// AVX2 path fuses multiply-add, so the two agree to a few ulps and the int8 path exactly
// whenever the float scaling is exact.
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/error.h"

namespace fathom::cpu {
namespace detail {

const float* fp8_e4m3_table() {
  static const auto table = [] {
    std::vector<float> t(256);
    for (int v = 0; v < 256; ++v) t[size_t(v)] = fp8_e4m3_to_f32(uint8_t(v));
    return t;
  }();
  return table.data();
}

void fail_no_kernel(const char* family, DType t) {
  fail("matmul: no {} kernel for weight dtype {}", family, dtype_name(t));
}

int32_t quantize_act_block(const float* x, int n, int8_t* q, float* d) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    amax = a > amax ? a : amax;  // as fmax: a NaN is passed over
  }
  const float db = amax / 127.0f;
  const float id = db != 0.0f ? 1.0f / db : 0.0f;
  *d = db;
  int32_t sum = 0;
  for (int i = 0; i < n; ++i) sum += q[i] = int8_t(std::nearbyint(x[i] * id));
  return sum;
}

void quantize_act_row_scalar(const float* x, int64_t K, int8_t* q, float* d, int32_t* sums) {
  for (int64_t b = 0; b < K / kQBlock; ++b) {
    const int32_t sum = quantize_act_block(x + b * kQBlock, kQBlock, q + b * kQBlock, d + b);
    if (sums) sums[b] = sum;
  }
}

namespace {

// Float formats: dequantize the weight row once, then 8-lane dots with every row of x.
void run_float(const Job& job, int64_t n0, int64_t n1) {
  const WeightView& w = *job.w;
  const int64_t K = w.cols, N = w.rows, K8 = K & ~int64_t(7);
  thread_local std::vector<float> wr;  // [K], grows once per thread
  if (wr.size() < size_t(K)) wr.resize(size_t(K));
  for (int64_t n = n0; n < n1; ++n) {
    dequantize_row(w, n, wr.data());
    for (int64_t i = 0; i < job.m; ++i) {
      const float* xi = job.x + i * K;
      float acc[8] = {};
      for (int64_t k = 0; k < K8; k += 8)
        for (int j = 0; j < 8; ++j) acc[j] += xi[k + j] * wr[size_t(k + j)];
      for (int64_t k = K8; k < K; ++k) acc[k - K8] += xi[k] * wr[size_t(k)];
      job.y[i * N + n] = hsum8(acc);
    }
  }
}

// The lane layout of the AVX2 kernels (see QActPair): blocks go in pairs, block 2p in lanes
// 0..3 and 2p+1 in lanes 4..7; lane j' sums elements 4j'..4j'+3 and 16+4j'..16+4j'+3. For
// Q4_0 wq holds unsigned nibbles and lane 0 of each block subtracts 8·Σx.
void pair_row_dot(bool q4, const int8_t* wq, const float* wd, const int8_t* xq, const float* xd, int64_t nb,
                  float acc[8]) {
  for (int64_t p = 0; p < (nb + 1) / 2; ++p)
    for (int half = 0; half < 2; ++half) {
      const int64_t b = 2 * p + half;
      if (b >= nb) {  // the AVX2 kernel adds 0·0 here
        for (int j = 0; j < 4; ++j) acc[4 * half + j] += 0.0f * 0.0f;
        continue;
      }
      const int8_t* wb = wq + b * kQBlock;
      const int8_t* xb = xq + b * kQBlock;
      const float s = wd[b] * xd[b];
      int32_t xsum = 0;
      for (int e = 0; e < kQBlock && q4; ++e) xsum += xb[e];
      for (int j = 0; j < 4; ++j) {
        int32_t sum = j == 0 && q4 ? -8 * xsum : 0;
        for (int e = 4 * j; e < 4 * j + 4; ++e) sum += int32_t(wb[e]) * xb[e] + int32_t(wb[16 + e]) * xb[16 + e];
        acc[4 * half + j] += float(sum) * s;
      }
    }
}

// Q8_0/Q4_0: weight row unpacked to int8 values and f32 block scales, then the lane sums
// of pair_row_dot.
void run_quant(const Job& job, int64_t n0, int64_t n1) {
  const WeightView& w = *job.w;
  const int64_t K = w.cols, N = w.rows, nb = K / kQBlock;
  const bool q4 = w.dtype == DType::Q4_0;
  thread_local std::vector<int8_t> wq;  // [K]
  thread_local std::vector<float> wd;   // [nb]
  if (wq.size() < size_t(K)) wq.resize(size_t(K));
  if (wd.size() < size_t(nb)) wd.resize(size_t(nb));
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* row = w.row(n);
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row + b * (q4 ? 18 : 34);
      uint16_t h;
      std::memcpy(&h, blk, 2);
      wd[size_t(b)] = f16_to_f32(h);
      int8_t* o = wq.data() + b * kQBlock;
      for (int i = 0; i < 16 && q4; ++i) {  // unsigned nibbles; the -8 is applied per block
        o[i] = int8_t(blk[2 + i] & 15);
        o[16 + i] = int8_t(blk[2 + i] >> 4);
      }
      if (!q4) std::memcpy(o, blk + 2, kQBlock);
    }
    for (int64_t i = 0; i < job.m; ++i) {
      const int8_t* xq = job.qa.q + i * K;
      const float* xd = job.qa.d + i * nb;
      float acc[8] = {};
      pair_row_dot(q4, wq.data(), wd.data(), xq, xd, nb, acc);
      job.y[i * N + n] = hsum8(acc);
    }
  }
}

}  // namespace

void run_cols_scalar(const Job& job, int64_t n0, int64_t n1) {
  switch (job.w->dtype) {
    case DType::F32: case DType::BF16: case DType::F16: case DType::F8_E4M3:
      return run_float(job, n0, n1);
    case DType::Q8_0: case DType::Q4_0:
      return run_quant(job, n0, n1);
    default: fail_no_kernel("scalar", job.w->dtype);
  }
}

}  // namespace detail
}  // namespace fathom::cpu
