#include "train/blas.h"

#include <cblas.h>

#include <algorithm>

#include "train/gemm_bf16.h"

namespace fathom::train {

void blas_threads(int n) {
  if (n > 0) openblas_set_num_threads(n);
}

BlasSerialScope::BlasSerialScope() : prev_(openblas_get_num_threads()) {
  if (prev_ > 1) openblas_set_num_threads(1);
}

BlasSerialScope::~BlasSerialScope() {
  if (prev_ > 1) openblas_set_num_threads(prev_);
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
           int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // BLAS leaves C untouched only when beta == 1
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

void gemm(const Compute& cx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (cx.bf16) {  // bf16 inputs, fp32 sums; splits over the pool itself
    sgemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, cx.pool);
    return;
  }
  const int threads = cx.pool ? cx.pool->size() : 1;
  // Split only where each part still fills the BLAS kernel's blocks.
  const double flops = 2.0 * double(M) * double(N) * double(K);
  if (threads <= 1 || flops < 4e6) {
    sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  BlasSerialScope serial;
  if (M >= N) {  // blocks of rows of C: rows of op(A)
    const int64_t step = (M + threads - 1) / threads;
    cx.pool->parallel_for(threads, 1, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r0 = t * step, r1 = std::min(M, r0 + step);
        if (r0 >= r1) continue;
        sgemm(ta, tb, r1 - r0, N, K, alpha, ta ? A + r0 : A + r0 * lda, lda, B, ldb, beta, C + r0 * ldc, ldc);
      }
    });
  } else {  // blocks of columns of C: columns of op(B)
    const int64_t step = ((N + threads - 1) / threads + 15) / 16 * 16;
    cx.pool->parallel_for(threads, 1, [&](int64_t t0, int64_t t1, int) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t c0 = t * step, c1 = std::min(N, c0 + step);
        if (c0 >= c1) continue;
        sgemm(ta, tb, M, c1 - c0, K, alpha, A, lda, tb ? B + c0 * ldb : B + c0, ldb, beta, C + c0, ldc);
      }
    });
  }
}

void linear_fwd(const Compute& cx, const float* x, const float* W, float* y, int64_t M, int64_t K, int64_t N,
                bool accumulate) {
  gemm(cx, false, true, M, N, K, 1.0f, x, K, W, K, accumulate ? 1.0f : 0.0f, y, N);
}

void linear_bwd(const Compute& cx, const float* dy, const float* x, const float* W, float* dx, float* dW, int64_t M,
                int64_t K, int64_t N) {
  if (dx) gemm(cx, false, false, M, K, N, 1.0f, dy, N, W, K, 1.0f, dx, K);
  if (dW) gemm(cx, true, false, N, K, M, 1.0f, dy, N, x, K, 1.0f, dW, K);
}

}  // namespace fathom::train
