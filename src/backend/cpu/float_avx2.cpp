// AVX2+FMA kernels for float weights (F32, BF16, F16, F8_E4M3): exact fp32 math, the weight
// converted to f32 in registers (FP8 with its block scale applied), no copy of the matrix.
#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/row_tiles.h"
#include "backend/cpu/simd.h"

FATHOM_AVX2_BEGIN
namespace fathom::cpu {
namespace {

using detail::Job;

// Weight loaders: state for one weight row, 8 consecutive values at column k as f32, and
// one value for the K tail. `chunk` is the column span over which the state is constant.
struct F32Row {
  const float* p;
  static constexpr int64_t chunk(const WeightView&) { return INT64_MAX; }
  static F32Row make(const WeightView& w, int64_t n) { return {reinterpret_cast<const float*>(w.row(n))}; }
  void begin(int64_t) {}
  __m256 load8(int64_t k) const { return _mm256_loadu_ps(p + k); }
  void prefetch(int64_t k, int bytes) const { _mm_prefetch(reinterpret_cast<const char*>(p + k) + bytes, _MM_HINT_T0); }
  float one(int64_t k) const { float f; std::memcpy(&f, p + k, 4); return f; }
};

struct BF16Row {
  const uint16_t* p;
  static constexpr int64_t chunk(const WeightView&) { return INT64_MAX; }
  static BF16Row make(const WeightView& w, int64_t n) { return {reinterpret_cast<const uint16_t*>(w.row(n))}; }
  void begin(int64_t) {}
  __m256 load8(int64_t k) const {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  float one(int64_t k) const { return bf16_to_f32(p[k]); }
  void prefetch(int64_t k, int bytes) const { _mm_prefetch(reinterpret_cast<const char*>(p + k) + bytes, _MM_HINT_T0); }
};

struct F16Row {
  const uint16_t* p;
  static constexpr int64_t chunk(const WeightView&) { return INT64_MAX; }
  static F16Row make(const WeightView& w, int64_t n) { return {reinterpret_cast<const uint16_t*>(w.row(n))}; }
  void begin(int64_t) {}
  __m256 load8(int64_t k) const { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + k))); }
  float one(int64_t k) const { return f16_to_f32(p[k]); }
  void prefetch(int64_t k, int bytes) const { _mm_prefetch(reinterpret_cast<const char*>(p + k) + bytes, _MM_HINT_T0); }
};

// e4m3 bits placed in an f16 (sign at 15, exponent+mantissa at 13..7) are the same value
// times 2^-8, exactly (subnormals included), so the decode is shifts plus vcvtph2ps and the
// 2^8 is folded into the block scale. NaN codes decode to 480·scale (checkpoints have none).
struct F8Row {
  const uint8_t* p;
  const float* srow;  // scale_inv row for this weight row's block: [ceil(K/block)]
  int64_t block;
  __m256 s;           // 256 * scale of the current block
  float s1;           // scale of the current block (tail)
  static int64_t chunk(const WeightView& w) { return w.block; }
  static F8Row make(const WeightView& w, int64_t n) {
    const int64_t nsb = (w.cols + w.block - 1) / w.block;
    return {w.row(n), w.block_scale + (n / w.block) * nsb, w.block, _mm256_setzero_ps(), 0.f};
  }
  void begin(int64_t k) {
    s1 = srow[k / block];
    s = _mm256_set1_ps(s1 * 256.0f);
  }
  __m256 load8(int64_t k) const {
    __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + k));
    __m128i h = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(b), 7), _mm_set1_epi16(int16_t(0xBF80)));
    return _mm256_mul_ps(_mm256_cvtph_ps(h), s);
  }
  float one(int64_t k) const { return detail::fp8_e4m3_table()[p[k]] * s1; }
  void prefetch(int64_t k, int bytes) const { _mm_prefetch(reinterpret_cast<const char*>(p + k) + bytes, _MM_HINT_T0); }
};

struct FloatTile {
  const WeightView* w;
  const float* x;  // [r, K] rows of this tile, stride K
  int64_t K;
  int64_t n0;      // first weight row
  float* y;        // y[i0, n0], stride ldy
  int64_t ldy;
};

constexpr int kPrefetch = 1024;  // bytes ahead in each weight row (DRAM latency × per-core bandwidth)

template <class L, int R, int C>
void float_tile(const FloatTile& t) {
  const int64_t K = t.K, K8 = K & ~int64_t(7);
  L rows[C];
  _Pragma("GCC unroll 8")
  for (int c = 0; c < C; ++c) rows[c] = L::make(*t.w, t.n0 + c);
  __m256 acc[R][C];
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  const int64_t chunk = L::chunk(*t.w);
  for (int64_t kb = 0; kb < K8; kb += chunk) {
    const int64_t ke = std::min(K8, kb + chunk);
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) rows[c].begin(kb);
    for (int64_t k = kb; k < ke; k += 8) {
      __m256 wv[C];
      _Pragma("GCC unroll 8")
      for (int c = 0; c < C; ++c) {
        rows[c].prefetch(k, kPrefetch);
        wv[c] = rows[c].load8(k);
      }
      _Pragma("GCC unroll 8")
      for (int r = 0; r < R; ++r) {
        const __m256 xv = _mm256_loadu_ps(t.x + r * K + k);
        _Pragma("GCC unroll 8")
        for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
      }
    }
  }
  if (K8 < K) {  // K tail: zero-padded lanes, the same for every tile shape
    const int rem = int(K - K8);
    const __m256i mask = simd::first_lanes(rem);
    __m256 wv[C];
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) {
      alignas(32) float tmp[8] = {};
      rows[c].begin(K8);
      for (int j = 0; j < rem; ++j) tmp[j] = rows[c].one(K8 + j);
      wv[c] = _mm256_load_ps(tmp);
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_maskload_ps(t.x + r * K + K8, mask);
      _Pragma("GCC unroll 8")
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  _Pragma("GCC unroll 8")
  for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 8")
    for (int c = 0; c < C; ++c) t.y[r * t.ldy + c] = simd::hsum(acc[r][c]);
}

constexpr int kR = 4, kC = 3;  // GEMM tile: 12 accumulators + 3 weights + 1 x = 16 ymm
constexpr int kCGemv = 4;      // table width (columns per tile up to this)
// With one row of x left (decode), one weight row at a time: one sequential stream, which
// with the software prefetch below streams fastest.
constexpr int kGemvC = 1;

template <class L>
void run_float(const Job& job, int64_t n0, int64_t n1) {
  static constexpr auto table = detail::row_tile_table<kR, kCGemv>([]<int R, int C>() { return &float_tile<L, R, C>; });
  const WeightView& w = *job.w;
  const int64_t K = w.cols, N = w.rows;
  detail::run_row_tiles<kR, kC, kGemvC, kCGemv>(job, n0, n1, w.row_bytes(), table, [&](int64_t i0, int64_t c0) {
    return FloatTile{&w, job.x + i0 * K, K, c0, job.y + i0 * N + c0, N};
  });
}

}  // namespace

void detail::run_cols_float_avx2(const Job& job, int64_t n0, int64_t n1) {
  switch (job.w->dtype) {
    case DType::F32: return run_float<F32Row>(job, n0, n1);
    case DType::BF16: return run_float<BF16Row>(job, n0, n1);
    case DType::F16: return run_float<F16Row>(job, n0, n1);
    case DType::F8_E4M3: return run_float<F8Row>(job, n0, n1);
    default: detail::fail_no_kernel("AVX2 float", job.w->dtype);
  }
}

}  // namespace fathom::cpu
FATHOM_AVX2_END
