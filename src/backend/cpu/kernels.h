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

// Two consecutive activation blocks (2p, 2p+1) laid out for the AVX2 int8 kernels: a Q4_0
// block's 16 bytes hold elements 0..15 in low nibbles and 16..31 in high nibbles, so two
// blocks load as one 256-bit [lo0|lo1], [hi0|hi1] pair that lines up with `lo`/`hi` here
// (Q8_0 weights are permuted into the same halves). The dot then yields 8 int32 lanes,
// 0..3 for block 2p and 4..7 for block 2p+1:
//   lane j = Σ_{e=4j'..4j'+3} w[e]·x[e] + w[16+e]·x[16+e]   (j' = j mod 4)
// with w = the signed Q8_0 value, or for Q4_0 the unsigned nibble 0..15 and then minus corr
// (8·Σx of the block, in lanes 0 and 4) for the -8 offset.
// A missing second block (odd block count) is all zeros.
struct alignas(32) QActPair {
  int8_t lo[32];     // x[2p][0..15], x[2p+1][0..15]
  int8_t hi[32];     // x[2p][16..31], x[2p+1][16..31]
  float d[8];        // d[2p] ×4, d[2p+1] ×4
  int32_t corr[8];   // 8·Σx[2p], 0, 0, 0, 8·Σx[2p+1], 0, 0, 0
};

// Activations quantized per row to blocks of 32: x[i, k] ≈ d[i, k/32] * q[i, k].
struct QuantActs {
  const int8_t* q = nullptr;             // [m, K]
  const float* d = nullptr;              // [m, K/32]
  const QActPair* pairs = nullptr;       // [m, ceil(K/64)], AVX2 on Rows weights only
  const int32_t* ncorr = nullptr;        // [m, K/32] -offset·Σq per block, Packed16 weights only
  // GGML formats (ggml_decode.h): q and d are per block of the weight format (32 or 256
  // values), and g16 [m, K/16] holds Σq per 16 values.
  const int16_t* g16 = nullptr;
};

// Rearranges one quantized row (nb blocks) into ceil(nb/2) pairs.
void build_act_pairs(const int8_t* q, const float* d, int64_t nb, QActPair* out);

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
// GGML block formats (ggml_decode.h), row-major. The three are bit-identical.
void run_cols_ggml_scalar(const Job& job, int64_t n0, int64_t n1);
void run_cols_ggml_avx2(const Job& job, int64_t n0, int64_t n1);
void run_cols_ggml_vnni(const Job& job, int64_t n0, int64_t n1);
// Packed16 weights (packed.h); n0 is a multiple of 16. The three are bit-identical.
void run_cols_packed_scalar(const Job& job, int64_t n0, int64_t n1);
void run_cols_packed_avx2(const Job& job, int64_t n0, int64_t n1);
void run_cols_packed_vnni(const Job& job, int64_t n0, int64_t n1);

// Quantizes one activation row of K values (K % 32 == 0) to Q8 blocks, round to nearest
// even with d = amax/127; where `sums` is not null, also each block's Σq (what the Packed16
// kernels start from). Both versions give identical bytes.
void quantize_act_row_scalar(const float* x, int64_t K, int8_t* q, float* d, int32_t* sums);
// One block of n values: *d = amax/127, q = x/d rounded to nearest even; returns Σq.
int32_t quantize_act_block(const float* x, int n, int8_t* q, float* d);
void quantize_act_row_avx2(const float* x, int64_t K, int8_t* q, float* d, int32_t* sums);

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
