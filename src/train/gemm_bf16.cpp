// bf16 GEMM: BLIS-style blocking around a 12x32 vdpbf16ps micro-kernel.
//   Loops: columns by NC, K by KC (pack op(B) block), rows by MC (pack op(A) block), then
//   32-column B panels by 12-row A panels. The accumulators live in 24 zmm registers.
//   Packing rounds to bf16 and interleaves pairs of k: a packed dword holds (k even, k odd),
//   the layout vdpbf16ps multiplies. An odd K pads its last pair with zero.
//   Each C element sees the same sequence of operations whatever the thread split (KC blocks
//   in order, each block's sum added as C = alpha * sum + C, the first one applying beta),
//   so the result is bitwise independent of the pool's size.
#include "train/gemm_bf16.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "backend/cpu/matmul.h"
#include "core/thread_pool.h"
#include "train/blas.h"

#include <immintrin.h>

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*, which its uninitialized-use
// warnings report at every inlined use.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#if defined(__clang__)
#define FATHOM_BF16_BEGIN \
  _Pragma("clang attribute push(__attribute__((target(\"avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma\"))), apply_to = function)")
#define FATHOM_BF16_END _Pragma("clang attribute pop")
#else
#define FATHOM_BF16_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma\")")
#define FATHOM_BF16_END _Pragma("GCC pop_options")
#endif

#define UNROLL _Pragma("GCC unroll 16")

namespace fathom::train {

namespace {

constexpr int kMR = 12;                  // rows of the micro-kernel
constexpr int kNR = 32;                  // columns of the micro-kernel (two zmm)
constexpr int64_t kKC = 512;             // K block (even, so a pair never straddles two blocks)
constexpr int64_t kMC = kMR * 16;        // rows of a packed A block
constexpr int64_t kNC = kNR * 64;        // columns of a packed B block
constexpr int64_t kKP = kKC / 2;         // pairs in a full K block

// A 64-byte aligned dword buffer that only grows: one per thread, reused across calls.
struct Scratch {
  std::vector<uint32_t> raw;
  uint32_t* get(size_t n) {
    if (raw.size() < n + 16) raw.resize(n + 16);
    const uintptr_t p = reinterpret_cast<uintptr_t>(raw.data());
    return reinterpret_cast<uint32_t*>((p + 63) & ~uintptr_t(63));
  }
};

// What one thread computes: the C tile [m0,m1) x [n0,n1) of the whole product.
struct Gemm {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
};

bool cpu_has_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = cpu::cpu_has_avx512() && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

}  // namespace

uint16_t round_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float bf16_to_float(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

bool bf16_gemm_supported() { return cpu_has_bf16(); }

FATHOM_BF16_BEGIN
namespace {

// 16 floats -> their bf16 bits in the low half of each dword (round to nearest even).
inline __m512i round16(__m512 x) {
  const __m512i u = _mm512_castps_si512(x);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                _mm512_set1_epi32(0x7f800000));
  const __m512i q = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  return _mm512_mask_mov_epi32(r, nan, q);
}

inline __mmask16 lanes(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << std::max<int64_t>(n, 0)) - 1);
}

// Pack where k is the strided index and the row/column index is contiguous (op(A) with ta,
// op(B) without tb): src[k * ld + i], i < w valid of `width`, k in [0, kc), as one pair
// p of a panel: dst[width] = (k = 2p, k = 2p + 1); i >= w and a missing odd k are zero.
inline void pack_strided_pair(const float* r0, int64_t ld, int64_t w, bool has1, int width, uint32_t* dst) {
  for (int c = 0; c < width; c += 16) {
    const __mmask16 ld_m = lanes(w - c), st_m = lanes(width - c);
    const __m512i lo = round16(_mm512_maskz_loadu_ps(ld_m, r0 + c));
    const __m512i hi = has1 ? round16(_mm512_maskz_loadu_ps(ld_m, r0 + ld + c)) : _mm512_setzero_si512();
    _mm512_mask_storeu_epi32(dst + c, st_m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

// Pack where k is contiguous (op(A) without ta, op(B) with tb): row i of src is
// src[i * ld + k], i < w valid of `width`, k in [0, kc). Same destination layout.
// Sixteen rows at a time are rounded to dword pairs and transposed through a 16x16 tile.
void pack_contig_k(const float* src, int64_t ld, int64_t w, int64_t kc, int width, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  alignas(64) uint32_t tile[16][16];  // [row][pair]
  for (int r0 = 0; r0 < width; r0 += 16) {
    const int rows = std::min(16, width - r0);
    for (int64_t p0 = 0; p0 < kp; p0 += 16) {
      const int64_t np = std::min<int64_t>(16, kp - p0);
      const int64_t k0 = 2 * p0, nk = std::min<int64_t>(32, kc - k0);
      for (int r = 0; r < rows; ++r) {
        if (r0 + r >= w) {
          _mm512_store_si512(tile[r], _mm512_setzero_si512());
          continue;
        }
        const float* s = src + (r0 + r) * ld + k0;
        const __m512i lo = round16(_mm512_maskz_loadu_ps(lanes(nk), s));
        const __m512i hi = round16(_mm512_maskz_loadu_ps(lanes(nk - 16), s + 16));
        // Narrowing each dword to its low 16 bits lines the bf16 values up as k pairs.
        const __m256i l16 = _mm512_cvtepi32_epi16(lo), h16 = _mm512_cvtepi32_epi16(hi);
        _mm512_store_si512(tile[r], _mm512_inserti64x4(_mm512_castsi256_si512(l16), h16, 1));
      }
      for (int64_t p = 0; p < np; ++p) {
        uint32_t* d = dst + (p0 + p) * width + r0;
        for (int r = 0; r < rows; ++r) d[r] = tile[r][p];
      }
    }
  }
}

// Packs n rows/columns (the M or N index) by kc of k into panels of `width`, each
// [kp][width] dwords. src points at (index 0, k 0); k_contig: src[i * ld + k], else
// src[k * ld + i], whose pairs go panel by panel so that each row of src is read in order.
void pack_block(const float* src, int64_t ld, bool k_contig, int64_t n, int64_t kc, int width, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  if (k_contig) {
    for (int64_t i = 0; i < n; i += width)
      pack_contig_k(src + i * ld, ld, std::min<int64_t>(width, n - i), kc, width, dst + (i / width) * kp * width);
    return;
  }
  for (int64_t p = 0; p < kp; ++p)
    for (int64_t i = 0; i < n; i += width)
      pack_strided_pair(src + 2 * p * ld + i, ld, std::min<int64_t>(width, n - i), 2 * p + 1 < kc, width,
                        dst + (i / width) * kp * width + p * width);
}

struct Epilogue {
  float alpha, beta;
  bool first;  // first K block: apply beta (beta == 0 never reads C)
};

// C[R rows, cols in mask] (+)= alpha * A-panel · B-panel over kp pairs.
// a: [kp][kMR] dwords, b: [kp][kNR] dwords.
template <int R>
void kernel(int64_t kp, const uint32_t* a, const uint32_t* b, float* c, int64_t ldc, uint32_t cols, Epilogue e) {
  __m512 acc[R][2];
  UNROLL for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t p = 0; p < kp; ++p) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b + p * kNR);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + p * kNR + 16);
    UNROLL for (int r = 0; r < R; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(int(a[p * kMR + r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
  }
  const __mmask16 m0 = __mmask16(cols & 0xffff), m1 = __mmask16(cols >> 16);
  const __m512 alpha = _mm512_set1_ps(e.alpha), beta = _mm512_set1_ps(e.beta);
  UNROLL for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    UNROLL for (int h = 0; h < 2; ++h) {
      const __mmask16 m = h ? m1 : m0;
      __m512 v;
      if (!e.first)
        v = _mm512_fmadd_ps(alpha, acc[r][h], _mm512_maskz_loadu_ps(m, cr + 16 * h));
      else if (e.beta == 0.0f)
        v = _mm512_mul_ps(alpha, acc[r][h]);
      else
        v = _mm512_fmadd_ps(alpha, acc[r][h], _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(m, cr + 16 * h)));
      _mm512_mask_storeu_ps(cr + 16 * h, m, v);
    }
  }
}

using KernelFn = void (*)(int64_t, const uint32_t*, const uint32_t*, float*, int64_t, uint32_t, Epilogue);
constexpr KernelFn kKernels[kMR + 1] = {nullptr,    kernel<1>, kernel<2>, kernel<3>,  kernel<4>,  kernel<5>, kernel<6>,
                                        kernel<7>, kernel<8>, kernel<9>, kernel<10>, kernel<11>, kernel<12>};

// The C tile [m0,m1) x [n0,n1), serially; ap/bp hold a packed A and B block.
void gemm_tile(const Gemm& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, uint32_t* ap, uint32_t* bp) {
  for (int64_t jc = n0; jc < n1; jc += kNC) {
    const int64_t nc = std::min(kNC, n1 - jc);
    for (int64_t pc = 0; pc < g.K; pc += kKC) {
      const int64_t kc = std::min(kKC, g.K - pc), kp = (kc + 1) / 2;
      pack_block(g.tb ? g.B + jc * g.ldb + pc : g.B + pc * g.ldb + jc, g.ldb, g.tb, nc, kc, kNR, bp);
      const Epilogue e{g.alpha, g.beta, pc == 0};
      for (int64_t ic = m0; ic < m1; ic += kMC) {
        const int64_t mc = std::min(kMC, m1 - ic);
        pack_block(g.ta ? g.A + pc * g.lda + ic : g.A + ic * g.lda + pc, g.lda, !g.ta, mc, kc, kMR, ap);
        for (int64_t jr = 0; jr < nc; jr += kNR) {
          const int64_t w = std::min<int64_t>(kNR, nc - jr);
          const uint32_t cols = w == 32 ? 0xffffffffu : (1u << w) - 1;
          const uint32_t* b = bp + (jr / kNR) * kp * kNR;
          for (int64_t ir = 0; ir < mc; ir += kMR) {
            const int rows = int(std::min<int64_t>(kMR, mc - ir));
            kKernels[rows](kp, ap + (ir / kMR) * kp * kMR, b, g.C + (ic + ir) * g.ldc + jc + jr, g.ldc, cols, e);
          }
        }
      }
    }
  }
}

}  // namespace
FATHOM_BF16_END

namespace {

// Splits the C matrix into tm x tn thread tiles (tm * tn <= threads), preferring the split
// that packs the fewest elements: A is packed once per column tile, B once per row tile.
struct Split {
  int tm = 1, tn = 1;
  int64_t rows = 0, cols = 0;  // per tile, multiples of kMR / kNR
};

Split split_tiles(int64_t M, int64_t N, int threads) {
  const int64_t mb = (M + kMR - 1) / kMR, nb = (N + kNR - 1) / kNR;
  Split best;
  double best_cost = -1;
  for (int tm = 1; tm <= threads; ++tm) {
    const int tn = threads / tm;
    if (tm > mb || tn > nb) continue;
    const int64_t rows = (mb + tm - 1) / tm * kMR, cols = (nb + tn - 1) / tn * kNR;
    // Time of the slowest tile (its product plus its packing) for the whole split.
    const double cost = double(rows) * double(cols) + 16.0 * (double(rows) + double(cols));
    if (best_cost < 0 || cost < best_cost) {
      best_cost = cost;
      best = {tm, tn, rows, cols};
    }
  }
  return best;
}

void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
}

// A rows x cols matrix with leading dimension ld, rounded to bf16 values held as floats.
std::vector<float> rounded_copy(const float* src, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[size_t(r * cols + c)] = bf16_to_float(round_bf16(src[r * ld + c]));
  return out;
}

}  // namespace

void sgemm_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                const float* B, int64_t ldb, float beta, float* C, int64_t ldc, ThreadPool* pool) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_c(M, N, beta, C, ldc);
  if (!cpu_has_bf16()) {
    // Same rounding, fp32 sums through BLAS.
    const auto a = ta ? rounded_copy(A, K, M, lda) : rounded_copy(A, M, K, lda);
    const auto b = tb ? rounded_copy(B, N, K, ldb) : rounded_copy(B, K, N, ldb);
    return sgemm(ta, tb, M, N, K, alpha, a.data(), ta ? M : K, b.data(), tb ? K : N, beta, C, ldc);
  }
  const Gemm g{ta, tb, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc};
  const int threads = pool ? pool->size() : 1;
  const Split s = split_tiles(M, N, threads);
  const int64_t kp = std::min(kKP, (K + 1) / 2);
  const auto run = [&](int64_t t) {
    const int64_t m0 = (t / s.tn) * s.rows, n0 = (t % s.tn) * s.cols;
    const int64_t m1 = std::min(M, m0 + s.rows), n1 = std::min(N, n0 + s.cols);
    if (m0 >= m1 || n0 >= n1) return;
    thread_local Scratch sa, sb;
    uint32_t* ap = sa.get(size_t(kMC * kp));
    uint32_t* bp = sb.get(size_t((std::min(kNC, n1 - n0) + kNR - 1) / kNR * kNR * kp));
    gemm_tile(g, m0, m1, n0, n1, ap, bp);
  };
  const int64_t tiles = int64_t(s.tm) * s.tn;
  if (tiles == 1 || !pool)
    for (int64_t t = 0; t < tiles; ++t) run(t);
  else
    pool->parallel_for(tiles, 1, [&](int64_t b, int64_t e, int) {
      for (int64_t t = b; t < e; ++t) run(t);
    });
}

void sgemm_bf16_scalar(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                       const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  // op(A) [M,K] and op(B)ᵀ [N,K], rounded, so the inner loop runs over contiguous k.
  std::vector<float> a(size_t(M * K)), bt(size_t(N * K));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k)
      a[size_t(i * K + k)] = bf16_to_float(round_bf16(ta ? A[k * lda + i] : A[i * lda + k]));
  for (int64_t j = 0; j < N; ++j)
    for (int64_t k = 0; k < K; ++k)
      bt[size_t(j * K + k)] = bf16_to_float(round_bf16(tb ? B[j * ldb + k] : B[k * ldb + j]));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      float acc = 0.0f;
      for (int64_t k = 0; k < K; ++k) acc += a[size_t(i * K + k)] * bt[size_t(j * K + k)];
      float& c = C[i * ldc + j];
      c = beta == 0 ? alpha * acc : alpha * acc + beta * c;
    }
}

}  // namespace fathom::train
