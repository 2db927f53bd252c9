#pragma once
// Internal interface between the matmul driver (matmul.cpp) and the per-ISA kernels.
//
// Every kernel computes each output element y[i, n] with one fixed sequence of operations
// that depends only on (x[i], W[n], K): 8 lane accumulators over K in order, then one fixed
// horizontal sum. Tiles of several rows/columns only interleave independent elements, so
// the tile shape (and hence m, the thread count and the column split) never changes bits.
#include <cstdint>

#include "backend/cpu/matmul.h"

namespace fathom::cpu::detail {

constexpr int kQBlock = 32;  // values per Q8_0/Q4_0 block, also the activation block

// Activations quantized per row to blocks of 32: x[i, k] ≈ d[i, k/32] * q[i, k].
struct QuantActs {
  const int8_t* q = nullptr;  // [m, K]
  const float* d = nullptr;   // [m, K/32]
};

// One matmul call as the kernels see it.
struct Job {
  const WeightView* w = nullptr;
  const float* x = nullptr;  // [m, K] f32 (float formats)
  QuantActs qa;              // quant formats
  int64_t m = 0;
  float* y = nullptr;        // [m, N]
};

// Computes y[:, n0:n1] for every row of x. Called concurrently on disjoint column ranges.
void run_cols_scalar(const Job& job, int64_t n0, int64_t n1);
void run_cols_float_avx2(const Job& job, int64_t n0, int64_t n1);
void run_cols_quant_avx2(const Job& job, int64_t n0, int64_t n1);

// Quantizes one activation row of K values (K % 32 == 0) to Q8 blocks, round to nearest
// even with d = amax/127. Both versions give identical bytes.
void quantize_act_row_scalar(const float* x, int64_t K, int8_t* q, float* d);
void quantize_act_row_avx2(const float* x, int64_t K, int8_t* q, float* d);

// Throws fathom::Error for a dtype a kernel family does not handle.
[[noreturn]] void fail_no_kernel(const char* family, DType t);

// Exact e4m3 decode table (NaN codes decode to NaN).
const float* fp8_e4m3_table();

// The fixed horizontal sum order of the AVX2 kernels, for the scalar mimics.
inline float hsum8(const float a[8]) {
  float l0 = a[0] + a[4], l1 = a[1] + a[5], l2 = a[2] + a[6], l3 = a[3] + a[7];
  return (l0 + l2) + (l1 + l3);
}

}  // namespace fathom::cpu::detail
