#pragma once
// bf16 GEMM for training: the operands are rounded to bf16 (round to nearest, ties to even)
// as they are packed, and the products are summed in fp32. On AVX-512 BF16 CPUs the sums
// run on vdpbf16ps, twice the fp32 FMA rate. Same layouts and meaning as train/blas.h sgemm.
#include <cstdint>

namespace fathom {
class ThreadPool;
}

namespace fathom::train {

// True when this CPU runs the AVX-512 BF16 kernel (F, BW, VL, BF16; FATHOM_CPU=avx2 or scalar turns it off).
bool bf16_gemm_supported();

// fp32 -> bf16 bits, round to nearest even; a NaN stays a (quiet) NaN.
uint16_t round_bf16(float x);
// bf16 bits -> fp32 (exact).
float bf16_to_float(uint16_t b);

// C[M,N] = alpha * op(A) · op(B) + beta * C with op(A), op(B) rounded to bf16 and fp32
// accumulation. op(A) is [M,K]: A is [M,K] (lda >= K) or, with ta, [K,M] (lda >= M).
// op(B) is [K,N]: B is [K,N] (ldb >= N) or, with tb, [N,K] (ldb >= K). beta == 0 ignores
// C's old contents (NaN included). pool may be null (the calling thread alone); the result
// does not depend on the pool's size. Without AVX-512 BF16 it rounds copies of A and B and
// runs the fp32 sgemm.
void sgemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool* pool);

// The plain-loop mirror of sgemm_bf16: the same rounding, one fp32 sum per element over k in
// order, then C = alpha * sum + beta * C (C = alpha * sum when beta == 0).
void sgemm_bf16_scalar(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

}  // namespace fathom::train
