#pragma once
// fp32 GEMM for training, through OpenBLAS (cblas_sgemm): every training matmul is one of
// the three layouts below. Row-major throughout.
#include <cstdint>

#include "core/thread_pool.h"

namespace fathom::train {

// How training's matmuls run: split over the pool's threads (each a one-thread BLAS call,
// so BLAS's own workers stay asleep and nothing spins against the pool), in fp32 or, where
// the CPU has AVX512_BF16, with bf16 inputs and fp32 accumulation.
struct Compute {
  Compute(ThreadPool* p = nullptr, bool use_bf16 = false) : pool(p), bf16(use_bf16) {}  // NOLINT: a pool converts
  ThreadPool* pool = nullptr;
  bool bf16 = false;
};

// Sets the BLAS thread count (training's matmuls run on BLAS threads; 0 keeps the default).
void blas_threads(int n);

// While alive, BLAS runs each GEMM on its calling thread: for GEMMs issued from several pool
// threads at once, which are the parallelism themselves. Restores the previous count.
class BlasSerialScope {
 public:
  BlasSerialScope();
  ~BlasSerialScope();
  BlasSerialScope(const BlasSerialScope&) = delete;
  BlasSerialScope& operator=(const BlasSerialScope&) = delete;

 private:
  int prev_;
};

// C[M,N] = alpha * op(A) * op(B) + beta * C. op(A) is [M,K]: A is [M,K] (lda >= K) or, with
// ta, [K,M] (lda >= M). op(B) is [K,N]: B is [K,N] or, with tb, [N,K].
void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
           int64_t ldb, float beta, float* C, int64_t ldc);

// sgemm split over cx's pool by blocks of output rows or columns (each element's sum keeps
// one order, so the result depends only on the pool's size), in cx's precision.
void gemm(const Compute& cx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

// A linear layer y = x Wᵀ with W in checkpoint layout [N out, K in].
// y: [M,N] (overwritten, or added to with accumulate).
void linear_fwd(const Compute& cx, const float* x, const float* W, float* y, int64_t M, int64_t K, int64_t N,
                bool accumulate = false);
// Its backward: dx[M,K] += dy[M,N] · W (skipped when dx is null); dW[N,K] += dyᵀ · x
// (skipped when dW is null).
void linear_bwd(const Compute& cx, const float* dy, const float* x, const float* W, float* dx, float* dW, int64_t M,
                int64_t K, int64_t N);
// One thread, fp32.
inline void linear_fwd(const float* x, const float* W, float* y, int64_t M, int64_t K, int64_t N, bool accumulate = false) {
  linear_fwd(Compute{}, x, W, y, M, K, N, accumulate);
}
inline void linear_bwd(const float* dy, const float* x, const float* W, float* dx, float* dW, int64_t M, int64_t K,
                       int64_t N) {
  linear_bwd(Compute{}, dy, x, W, dx, dW, M, K, N);
}

}  // namespace fathom::train
