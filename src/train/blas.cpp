#include "train/blas.h"

#include <cblas.h>

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

void linear_fwd(const float* x, const float* W, float* y, int64_t M, int64_t K, int64_t N, bool accumulate) {
  sgemm(false, true, M, N, K, 1.0f, x, K, W, K, accumulate ? 1.0f : 0.0f, y, N);
}

void linear_bwd(const float* dy, const float* x, const float* W, float* dx, float* dW, int64_t M, int64_t K, int64_t N) {
  if (dx) sgemm(false, false, M, K, N, 1.0f, dy, N, W, K, 1.0f, dx, K);
  if (dW) sgemm(true, false, N, K, M, 1.0f, dy, N, x, K, 1.0f, dW, K);
}

}  // namespace fathom::train
