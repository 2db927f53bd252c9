// Backend ops, linear algebra: matmul for every weight format (stored, packed, requantized),
// matmul_many, dequantize_row, arena_bytes, prepare_mla_absorbed, add_bias and add, each
// against a naive reference; batch and thread invariance of matmul.
#include <algorithm>

#include "ops_reference.h"

namespace fathom::opstest {
namespace {

class BackendMatmul : public BackendTest {};

// y = x·Wᵀ from the weight's values wv [N, K], with a bound on the backend's rounding error.
//   Float formats (F32/F16/BF16/F8): the product is fp32 math on the exact weight values in
//   any summation order, so |y - exact| ≤ γ_K·Σ|x·w| with γ_K ≈ K·u; we allow (K+4)·u.
//   Q8_0/Q4_0: x is quantized per 32 values as matmul.h defines (d = amax/127 in fp32,
//   q = round-to-nearest-even(x·(1/d))) and the block sums Σ q_w·q_x are exact integers, so
//   only the fp32 scaling and the sum over K/32 blocks round: ≤ (K/32 + 3)·u·Σ|terms|; we
//   allow twice that. An x·(1/d) within 1e-4 of a rounding tie may round either way on
//   another backend: such elements add |d·w| to the bound.
struct Ref {
  std::vector<double> want, tol;
};
Ref matmul_ref(DType t, const std::vector<float>& wv, int64_t N, int64_t K, const std::vector<float>& x, int64_t m) {
  Ref r{std::vector<double>(size_t(m * N)), std::vector<double>(size_t(m * N))};
  std::vector<double> xs(static_cast<size_t>(K)), slack(static_cast<size_t>(K));  // x as the kernel multiplies it; tie slack
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x.data() + i * K;
    if (is_block_quant(t)) {
      for (int64_t b = 0; b < K / 32; ++b) {
        float amax = 0.f;
        for (int k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(xi[b * 32 + k]));
        const float d = amax / 127.0f, id = d != 0.f ? 1.0f / d : 0.f;
        for (int64_t k = b * 32; k < b * 32 + 32; ++k) {
          const float s = xi[k] * id;
          xs[size_t(k)] = double(d) * std::nearbyint(s);
          slack[size_t(k)] = std::fabs(std::fabs(s - std::trunc(s)) - 0.5) < 1e-4 ? d : 0.0;
        }
      }
    } else {
      for (int64_t k = 0; k < K; ++k) xs[size_t(k)] = xi[k], slack[size_t(k)] = 0;
    }
    const double g = is_block_quant(t) ? 2.0 * double(K / 32 + 3) * kU : double(K + 4) * kU;
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, mag = 0, sl = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double w = wv[size_t(n * K + k)];
        s += xs[size_t(k)] * w;
        mag += std::fabs(xs[size_t(k)] * w);
        sl += slack[size_t(k)] * std::fabs(w);
      }
      r.want[size_t(i * N + n)] = s;
      r.tol[size_t(i * N + n)] = g * mag + sl + 1e-30;
    }
  }
  return r;
}

std::vector<float> run_matmul(Backend& be, const Weight& w, const std::vector<float>& x, int64_t m) {
  DevBuf dx(be, x), dy(be, size_t(m * w.rows()));
  be.matmul(w, dx.p(), m, dy.p());
  return dy.get();
}

struct Format {
  DType t;
  int64_t block = 128;  // F8 scale blocks
};
const Format kFormats[] = {{DType::F32}, {DType::F16}, {DType::BF16}, {DType::F8_E4M3, 128},
                           {DType::F8_E4M3, 16}, {DType::Q8_0}, {DType::Q4_0}};

std::vector<int64_t> odd_cols(DType t) {
  if (is_block_quant(t)) return {32, 96, 288};
  return {5, 33, 67, 257};
}

std::string label(const Format& f, int64_t N, int64_t K, int64_t m, bool repack) {
  return std::string(dtype_name(f.t)) + (f.t == DType::F8_E4M3 ? "/b" + std::to_string(f.block) : "") +
         " N=" + std::to_string(N) + " K=" + std::to_string(K) + " m=" + std::to_string(m) +
         (repack ? " repack" : " rows");
}

// Every format, stored and repacked, on odd shapes (N = 33: two packed groups of 16 and a
// partial one). dequantize_row must give the stored values bit for bit in every layout; the
// arena must hold exactly what arena_bytes announced.
TEST_P(BackendMatmul, EveryFormatOnOddShapes) {
  struct Case {
    Format f;
    bool repack;
    int64_t N, K;
    HostMatrix hm;
  };
  std::vector<Case> cases;
  size_t arena = 0;
  auto be = make(2, 0);
  for (const Format& f : kFormats)
    for (bool repack : {false, true})
      for (int64_t N : {1, 3, 17, 33})
        for (int64_t K : odd_cols(f.t)) {
          const auto src = randn(size_t(N * K), uint32_t(N * 7919 + K * 31 + int(f.t)), 0.5f);
          cases.push_back({f, repack, N, K, encode(f.t, src, N, K, f.block)});
          arena += be->arena_bytes(cases.back().hm.stored(), WeightPrep{std::nullopt, repack, false});
        }
  be->reserve_arena(arena);
  for (const Case& c : cases) {
    const auto w = be->prepare_matrix(c.hm.stored(), WeightPrep{std::nullopt, c.repack, false});
    ASSERT_EQ(w->dtype(), c.f.t);
    ASSERT_EQ(w->rows(), c.N);
    ASSERT_EQ(w->cols(), c.K);
    const auto wv = decode(c.hm);
    ASSERT_TRUE(bit_equal(dequantized(*be, *w), wv, c.K)) << "dequantize_row " << label(c.f, c.N, c.K, 0, c.repack);
    for (int64_t m : {1, 3, 17}) {
      const auto x = randn(size_t(m * c.K), uint32_t(m * 13 + c.K));
      const Ref ref = matmul_ref(c.f.t, wv, c.N, c.K, x, m);
      ASSERT_TRUE(within(run_matmul(*be, *w, x, m), ref.want, ref.tol, c.N)) << label(c.f, c.N, c.K, m, c.repack);
    }
  }
}

// Bound on requantization error per value: Q8_0 |x - d·q| ≤ d/2 with d = amax/127; Q4_0
// ≤ |d| with |d| = amax/8, reached where q clamps at 15 (x/d up to 8). d is stored as f16
// (relative error 2^-11): Q8_0 d/2·(1 + 2^-10); Q4_0, where x/d reaches 8·(1 + 2^-11) at the
// clamp, d·(1 + 2^-8). We allow those with 2^-7 for Q4_0.
std::vector<double> requant_tol(DType t, const std::vector<float>& v) {
  std::vector<double> tol(v.size());
  for (size_t b = 0; b < v.size() / 32; ++b) {
    double amax = 0;
    for (size_t k = 0; k < 32; ++k) amax = std::max(amax, std::fabs(double(v[b * 32 + k])));
    const double e = t == DType::Q8_0 ? amax / 127 / 2 * (1 + 1.0 / 1024) : amax / 8 * (1 + 1.0 / 128);
    for (size_t k = 0; k < 32; ++k) tol[b * 32 + k] = e + 1e-30;
  }
  return tol;
}

// --quant: F32/BF16/F8 weights requantized to Q8_0/Q4_0 (with and without packing) hold the
// stored values within the format's rounding, and matmul computes with what they hold. Rows
// that do not split into 32-value blocks keep their stored format.
TEST_P(BackendMatmul, Requantized) {
  auto be = make(2);
  for (DType target : {DType::Q8_0, DType::Q4_0})
    for (DType src_t : {DType::F32, DType::BF16, DType::F8_E4M3})
      for (bool repack : {false, true})
        for (int64_t K : {32, 96, 288, 67}) {
          const int64_t N = 17;
          const HostMatrix hm = encode(src_t, randn(size_t(N * K), uint32_t(K + int(src_t))), N, K);
          const WeightPrep prep{target, repack, false};
          const auto w = be->prepare_matrix(hm.stored(), prep);
          const std::string what = std::string(dtype_name(src_t)) + "→" + std::string(dtype_name(target)) +
                                   " K=" + std::to_string(K) + (repack ? " repack" : "");
          const auto orig = decode(hm);
          const auto wv = dequantized(*be, *w);
          if (K % 32) {
            ASSERT_EQ(w->dtype(), src_t) << what;
            ASSERT_TRUE(bit_equal(wv, orig, K)) << what;
          } else {
            ASSERT_EQ(w->dtype(), target) << what;
            ASSERT_TRUE(within(wv, to_double(orig), requant_tol(target, orig), K)) << what;
          }
          for (int64_t m : {1, 17}) {
            const auto x = randn(size_t(m * K), uint32_t(m + 5 * K));
            const Ref ref = matmul_ref(w->dtype(), wv, N, K, x, m);
            ASSERT_TRUE(within(run_matmul(*be, *w, x, m), ref.want, ref.tol, N)) << what << " m=" << m;
          }
        }
}

// What the model relies on: a row's result does not depend on the other rows of the call
// nor on the number of threads, bit for bit. Sizes large enough that the rows are quantized
// on the pool and the weights split into several chunks.
TEST_P(BackendMatmul, BatchAndThreadInvariance) {
  const int64_t N = 67, M = 17;
  std::vector<std::unique_ptr<Backend>> bes;
  for (int t : {1, 2, 3}) bes.push_back(make(t));
  for (int t = 0; t < 3; ++t) ASSERT_EQ(bes[size_t(t)]->threads(), t + 1);
  for (const Format& f : kFormats)
    for (bool repack : {false, true}) {
      const int64_t K = is_block_quant(f.t) ? 1024 : 515;
      const HostMatrix hm = encode(f.t, randn(size_t(N * K), uint32_t(K + int(f.t))), N, K, f.block);
      const auto x = randn(size_t(M * K), 99);
      std::vector<float> base;
      for (auto& be : bes) {
        const auto w = be->prepare_matrix(hm.stored(), WeightPrep{std::nullopt, repack, false});
        if (base.empty()) base = run_matmul(*be, *w, x, M);
        for (int64_t m : {M, int64_t(5), int64_t(3), int64_t(1)})
          for (int64_t i0 : {int64_t(0), M - m}) {
            const std::vector<float> xs(x.begin() + i0 * K, x.begin() + (i0 + m) * K);
            const std::vector<float> want(base.begin() + i0 * N, base.begin() + (i0 + m) * N);
            ASSERT_TRUE(bit_equal(run_matmul(*be, *w, xs, m), want, N))
                << label(f, N, K, m, repack) << " rows from " << i0 << ", threads " << be->threads();
          }
      }
    }
}

// matmul_many: each product equals matmul's bits (mixed formats and batch sizes).
TEST_P(BackendMatmul, ManyEqualsOneByOne) {
  for (int threads : {1, 3}) {
    auto be = make(threads);
    const Format fs[] = {{DType::Q8_0}, {DType::Q4_0}, {DType::BF16}, {DType::F8_E4M3, 16}, {DType::F32}};
    const int64_t Ns[] = {33, 3, 17, 1, 5}, Ks[] = {96, 64, 33, 48, 7}, Ms[] = {1, 3, 2, 17, 1};
    std::vector<HostMatrix> hms;
    std::vector<std::unique_ptr<Weight>> ws;
    std::vector<std::unique_ptr<DevBuf>> xs, ys;
    std::vector<MatmulTask> tasks;
    for (int j = 0; j < 5; ++j) {
      hms.push_back(encode(fs[j].t, randn(size_t(Ns[j] * Ks[j]), uint32_t(j)), Ns[j], Ks[j], fs[j].block));
      ws.push_back(be->prepare_matrix(hms.back().stored(), WeightPrep{}));
      xs.push_back(std::make_unique<DevBuf>(*be, randn(size_t(Ms[j] * Ks[j]), uint32_t(10 + j))));
      ys.push_back(std::make_unique<DevBuf>(*be, size_t(Ms[j] * Ns[j])));
      tasks.push_back({ws.back().get(), xs.back()->p(), Ms[j], ys.back()->p()});
    }
    be->matmul_many(tasks.data(), tasks.size());
    for (int j = 0; j < 5; ++j)
      ASSERT_TRUE(bit_equal(ys[size_t(j)]->get(), run_matmul(*be, *ws[size_t(j)], xs[size_t(j)]->get(), Ms[j]), Ns[j]))
          << "task " << j << " (" << dtype_name(fs[j].t) << ") threads " << threads;
  }
}

// add_bias and add: one fp32 addition per value, so bit-exact against the same addition.
TEST_P(BackendMatmul, AddBiasAndAdd) {
  auto be = make(2);
  const int64_t m = 3, n = 67;
  const auto y = randn(size_t(m * n), 1), b = randn(size_t(n), 2), z = randn(size_t(m * n), 3);
  const auto bias = be->prepare_vector(b);
  ASSERT_EQ(bias->rows(), 1);
  ASSERT_EQ(bias->cols(), n);
  DevBuf dy(*be, y), dz(*be, z);
  be->add_bias(dy.p(), m, *bias);
  std::vector<float> want = y;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) want[size_t(i * n + j)] = y[size_t(i * n + j)] + b[size_t(j)];
  ASSERT_TRUE(bit_equal(dy.get(), want, n)) << "add_bias";
  be->add(dy.p(), dz.p(), m * n - 1);  // an odd count: the last value stays
  for (int64_t i = 0; i < m * n - 1; ++i) want[size_t(i)] += z[size_t(i)];
  ASSERT_TRUE(bit_equal(dy.get(), want, n)) << "add";
}

// prepare_mla_absorbed: head h's W_UKᵀ [r, nope] is the transpose of kv_b rows
// h·(nope+v) .. +nope, and W_UV [v, r] is rows h·(nope+v)+nope .. +v. Values are exact
// (W_UV keeps kv_b's values; W_UKᵀ too, except that block formats are requantized along the
// new rows: within the format's rounding). The per-head products must equal the naive
// products with those slices.
TEST_P(BackendMatmul, MlaAbsorbedSlicesKvB) {
  struct Shape {
    int64_t H, nope, v, r;
  };
  for (const Shape s : {Shape{3, 32, 32, 64}, Shape{3, 16, 16, 64}, Shape{3, 5, 7, 96}})
    for (const Format& f : kFormats)
      for (bool repack : {false, true}) {
        if (is_block_quant(f.t) && s.r % 32) continue;
        auto be = make(2);
        const int64_t per = s.nope + s.v, rows = s.H * per;
        const HostMatrix hm = encode(f.t, randn(size_t(rows * s.r), uint32_t(s.nope + int(f.t))), rows, s.r, f.block);
        const auto kv_b = be->prepare_matrix(hm.stored(), WeightPrep{std::nullopt, repack, false});
        const MlaAbsorbed a = be->prepare_mla_absorbed(*kv_b, s.H, s.nope, s.v);
        const std::string what = std::string(dtype_name(f.t)) + " nope=" + std::to_string(s.nope) +
                                 (repack ? " repack" : "");
        ASSERT_EQ(a.uk_t.size(), size_t(s.H));
        ASSERT_EQ(a.uv.size(), size_t(s.H));
        EXPECT_GT(a.bytes, 0u);
        const auto kv = decode(hm);  // [H·per, r]
        for (int64_t h = 0; h < s.H; ++h) {
          const Weight& uk = *a.uk_t[size_t(h)];
          const Weight& uv = *a.uv[size_t(h)];
          ASSERT_EQ(uk.rows(), s.r);
          ASSERT_EQ(uk.cols(), s.nope);
          ASSERT_EQ(uv.rows(), s.v);
          ASSERT_EQ(uv.cols(), s.r);
          std::vector<float> uk_want(size_t(s.r * s.nope)), uv_want(size_t(s.v * s.r));
          for (int64_t j = 0; j < s.r; ++j)
            for (int64_t n = 0; n < s.nope; ++n)
              uk_want[size_t(j * s.nope + n)] = kv[size_t((h * per + n) * s.r + j)];
          for (int64_t j = 0; j < s.v; ++j)
            for (int64_t c = 0; c < s.r; ++c) uv_want[size_t(j * s.r + c)] = kv[size_t((h * per + s.nope + j) * s.r + c)];
          ASSERT_TRUE(bit_equal(dequantized(*be, uv), uv_want, s.r)) << what << " W_UV head " << h;
          const auto uk_got = dequantized(*be, uk);
          if (is_block_quant(uk.dtype())) {
            ASSERT_EQ(uk.dtype(), f.t);
            ASSERT_TRUE(within(uk_got, to_double(uk_want), requant_tol(uk.dtype(), uk_want), s.nope))
                << what << " W_UKT head " << h;
          } else {
            ASSERT_TRUE(bit_equal(uk_got, uk_want, s.nope)) << what << " W_UKT head " << h;
          }
          for (int64_t m : {1, 3}) {
            const auto xq = randn(size_t(m * s.nope), uint32_t(h + 7 * m));
            Ref ref = matmul_ref(uk.dtype(), uk_got, s.r, s.nope, xq, m);
            ASSERT_TRUE(within(run_matmul(*be, uk, xq, m), ref.want, ref.tol, s.r)) << what << " q_lat head " << h;
            const auto xl = randn(size_t(m * s.r), uint32_t(h + 11 * m));
            ref = matmul_ref(uv.dtype(), uv_want, s.v, s.r, xl, m);
            ASSERT_TRUE(within(run_matmul(*be, uv, xl, m), ref.want, ref.tol, s.v)) << what << " W_UV·c head " << h;
          }
        }
      }
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendMatmul, ::testing::ValuesIn(backend_factories()), factory_name);

}  // namespace
}  // namespace fathom::opstest
