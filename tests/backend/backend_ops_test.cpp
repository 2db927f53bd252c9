// Backend ops, everything but matmul and attention: memory (fill/write/read), the row-wise
// ops (rmsnorm, rope, swiglu, softmax, copy_rows), embed, gather_rows, scatter_add,
// moe_route and the bandwidth probe, each against a naive reference on odd shapes.
#include <algorithm>
#include <numeric>

#include "backend/routing.h"
#include "ops_reference.h"

namespace fathom::opstest {
namespace {

class BackendOps : public BackendTest {};

float bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// write/read round-trip every bit pattern (NaN payloads, -0, inf, denormals); fill touches
// exactly the n values asked for. Pure data movement: bit-exact.
TEST_P(BackendOps, FillWriteRead) {
  auto be = make(2);
  EXPECT_NE(std::string(be->name()), "");
  std::vector<float> h = randn(69, 1);
  h[3] = bits(0x7fc01234u), h[4] = bits(0xff800001u), h[5] = -0.0f, h[6] = INFINITY, h[7] = -INFINITY;
  h[8] = bits(0x00000001u), h[9] = bits(0x807fffffu);
  DevBuf d(*be, h);
  ASSERT_TRUE(bit_equal(d.get(), h)) << "write/read";
  for (float v : {3.5f, -0.0f, bits(0x7fc0beefu)}) {
    be->fill(d.p() + 1, v, 67);
    std::vector<float> want = h;
    std::fill(want.begin() + 1, want.begin() + 68, v);
    ASSERT_TRUE(bit_equal(d.get(), want)) << "fill " << v;
  }
  if (be->host_memory()) {
    be->write(d.p(), h.data(), h.size());
    ASSERT_TRUE(bit_equal(std::vector<float>(d.p(), d.p() + h.size()), h)) << "host memory";
  }
}

// out = w·x/sqrt(mean(x²) + eps), in double. fp32: Σx² over n positive terms is within n·u,
// the mean, eps, sqrt and reciprocal add ≤ 4u, the two products 2u: (n/2 + 6)·u relative;
// we allow (n + 8)·u. Strided rows; the values between rows are untouched (bit-exact).
void check_rmsnorm(Backend& be, int64_t rows, int64_t cols, int64_t xs, int64_t os, bool alias, uint32_t seed) {
  const double eps = 1e-6;
  const auto wv = randn(size_t(cols), seed, 0.3f);
  auto xh = randn(size_t(rows * xs), seed + 1, 2.0f);
  xh[0] = 0.f;
  const auto w = be.prepare_vector(wv);
  DevBuf dx(be, xh);
  DevBuf dout(be, randn(size_t(rows * os), seed + 2));
  const auto out0 = dout.get();
  RowsRef x{dx.p(), rows, cols, xs};
  RowsRef out = alias ? x : RowsRef{dout.p(), rows, cols, os};
  be.rmsnorm(x, *w, out, eps);
  const int64_t ostr = alias ? xs : os;
  std::vector<double> want(alias ? to_double(xh) : to_double(out0)), tol(want.size(), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < cols; ++i) ss += double(xh[size_t(r * xs + i)]) * xh[size_t(r * xs + i)];
    const double inv = 1.0 / std::sqrt(ss / double(cols) + eps);
    for (int64_t i = 0; i < cols; ++i) {
      const double v = wv[size_t(i)] * (xh[size_t(r * xs + i)] * inv);
      want[size_t(r * ostr + i)] = v;
      tol[size_t(r * ostr + i)] = double(cols + 8) * kU * std::fabs(v) + 1e-37;
    }
  }
  const std::string what = "rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) + (alias ? " in place" : "");
  ASSERT_TRUE(within(alias ? dx.get() : dout.get(), want, tol, ostr)) << what;
  if (!alias) {
    ASSERT_TRUE(bit_equal(dx.get(), xh, xs)) << what << ": x changed";
  }
}

TEST_P(BackendOps, Rmsnorm) {
  auto be = make(2);
  check_rmsnorm(*be, 3, 67, 70, 75, false, 10);
  check_rmsnorm(*be, 3, 67, 70, 70, true, 11);
  check_rmsnorm(*be, 1, 5, 5, 5, false, 12);
  check_rmsnorm(*be, 17, 33, 41, 33, false, 13);
  check_rmsnorm(*be, 17, 33, 33, 33, true, 14);
}

// Rotation of each pair by pos·inv_freq (the angle formed in fp32, as the op defines), in
// double. fp32: cos/sin rounded and scaled (2u), two products and a sum (2u more): we allow
// 6u·(|x0·c| + |x1·s|) (and 6u·(|x1·c| + |x0·s|) for the other). Everything outside the rotated parts is untouched (bit-exact).
struct RopeCase {
  int64_t rows, heads, dim, head_stride, offset, row_stride;
  bool interleaved;
  float attn_factor;
  std::vector<int64_t> pos;
};

void check_rope(Backend& be, const RopeCase& c, uint32_t seed) {
  std::vector<float> inv(size_t(c.dim / 2));
  for (size_t i = 0; i < inv.size(); ++i) inv[i] = float(std::pow(10000.0, -2.0 * double(i) / double(c.dim)));
  const auto xh = randn(size_t(c.rows * c.row_stride), seed);
  DevBuf d(be, xh);
  const RopeParams p{inv.data(), c.dim, c.interleaved, c.attn_factor};
  be.rope(p, RowsRef{d.p() + c.offset, c.rows, c.heads * c.head_stride, c.row_stride}, c.heads, c.head_stride,
          c.pos.data());
  std::vector<double> want = to_double(xh), tol(want.size(), 0.0);
  const int64_t half = c.dim / 2;
  for (int64_t r = 0; r < c.rows; ++r)
    for (int64_t h = 0; h < c.heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const float ang = float(c.pos[size_t(r)]) * inv[size_t(i)];
        const double cs = std::cos(double(ang)) * c.attn_factor, sn = std::sin(double(ang)) * c.attn_factor;
        const int64_t base = r * c.row_stride + c.offset + h * c.head_stride;
        const size_t a = size_t(base + (c.interleaved ? 2 * i : i)), b = size_t(base + (c.interleaved ? 2 * i + 1 : i + half));
        const double x0 = xh[a], x1 = xh[b];
        want[a] = x0 * cs - x1 * sn;
        want[b] = x1 * cs + x0 * sn;
        tol[a] = 6 * kU * (std::fabs(x0 * cs) + std::fabs(x1 * sn)) + 1e-37;
        tol[b] = 6 * kU * (std::fabs(x1 * cs) + std::fabs(x0 * sn)) + 1e-37;
      }
  ASSERT_TRUE(within(d.get(), want, tol, c.row_stride))
      << "dim=" << c.dim << " heads=" << c.heads << (c.interleaved ? " interleaved" : " halves") << " attn_factor="
      << c.attn_factor;
}

TEST_P(BackendOps, Rope) {
  auto be = make(2);
  // MLA query: per head [nope 5 | rope 8], rope interleaved, rows padded.
  check_rope(*be, {3, 3, 8, 13, 5, 41, true, 1.23f, {7, 8, 4095}}, 1);
  check_rope(*be, {3, 3, 8, 13, 5, 41, false, 1.23f, {7, 8, 4095}}, 2);
  // k_pe: one head of 64 at the end of a cache-like row.
  check_rope(*be, {5, 1, 64, 64, 101, 165, false, 1.0f, {0, 1, 2, 100, 33}}, 3);
  check_rope(*be, {5, 1, 64, 64, 101, 165, true, 0.7f, {3, 1, 2, 100, 33}}, 4);
  // Contiguous heads of 10.
  check_rope(*be, {2, 3, 10, 10, 0, 30, false, 1.0f, {12345, 6}}, 5);
}

// silu(g)·u in double. exp is within 2 ulp, then 1 + e, the division and the product: 6u
// relative; we allow 8u (and 1e-36 absolute for results that underflow). NaN passes through.
TEST_P(BackendOps, Swiglu) {
  auto be = make(2);
  for (int64_t n : {5, 67, 5003}) {  // 5003: split across the pool
    auto g = randn(size_t(n), uint32_t(n), 3.0f);
    const auto u = randn(size_t(n), uint32_t(n + 1));
    const float special[] = {0.f, -0.f, 88.f, -88.f, -100.f, 100.f, 1e-30f, -1e-30f, 15.f, -15.f, NAN};
    for (size_t i = 0; i < std::size(special) && i < size_t(n); ++i) g[size_t(n) - 1 - i * 2 % size_t(n)] = special[i];
    DevBuf dg(*be, g), du(*be, u);
    be->swiglu(dg.p(), du.p(), n);
    std::vector<double> want(static_cast<size_t>(n));
    for (size_t i = 0; i < size_t(n); ++i) want[i] = double(g[i]) / (1.0 + std::exp(-double(g[i]))) * u[i];
    ASSERT_TRUE(within(dg.get(), want, 1e-36, 8 * kU)) << "n=" << n;
  }
}

// exp(x - max)/Σ in double. fp32: x - max rounds within u·|x - max|, which exp turns into a
// relative error of that size; exp itself is within 2 ulp; the sum of n positive terms adds
// n·u and Σp·|x - max|·u; the division u: tol_i = p_i·u·(|x_i - max| + Σp|x - max| + n + 8).
TEST_P(BackendOps, Softmax) {
  auto be = make(2);
  for (int64_t n : {1, 5, 67}) {
    const int64_t rows = 5;
    auto x = randn(size_t(rows * n), uint32_t(n), 4.0f);
    for (int64_t i = 0; i < n; ++i) {
      x[size_t(n + i)] += 1000.f;                                  // row 1: large values
      if (i % 3 == 1) x[size_t(2 * n + i)] = -INFINITY;            // row 2: masked entries
      x[size_t(3 * n + i)] = 0.25f;                                // row 3: all equal
    }
    DevBuf d(*be, x);
    be->softmax(d.p(), rows, n);
    std::vector<double> want(x.size()), tol(x.size());
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x.data() + r * n;
      const double mx = *std::max_element(xr, xr + n);
      double s = 0, s1 = 0;
      for (int64_t i = 0; i < n; ++i) s += std::exp(xr[i] - mx);
      for (int64_t i = 0; i < n; ++i) {
        const double p = std::exp(xr[i] - mx) / s;
        want[size_t(r * n + i)] = p;
        if (std::isfinite(xr[i])) s1 += p * std::fabs(xr[i] - mx);
      }
      for (int64_t i = 0; i < n; ++i) {
        const double p = want[size_t(r * n + i)], dx = std::isfinite(xr[i]) ? std::fabs(xr[i] - mx) : 0;
        tol[size_t(r * n + i)] = p * kU * (dx + s1 + double(n) + 8) + 1e-37;
      }
    }
    ASSERT_TRUE(within(d.get(), want, tol, n)) << "n=" << n;
  }
}

// copy_rows between strided blocks: bit-exact, the padding of dst untouched.
TEST_P(BackendOps, CopyRows) {
  auto be = make(2);
  const int64_t rows = 3, cols = 7, ss = 9, ds = 11;
  const auto src = randn(size_t(rows * ss), 1), dst0 = randn(size_t(rows * ds + 3), 2);
  DevBuf s(*be, src), d(*be, dst0);
  be->copy_rows(RowsRef{s.p() + 1, rows, cols, ss}, RowsRef{d.p() + 2, rows, cols, ds});
  std::vector<float> want = dst0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) want[size_t(2 + r * ds + c)] = src[size_t(1 + r * ss + c)];
  ASSERT_TRUE(bit_equal(d.get(), want, ds));
}

// embed: each token's row as f32; every format decodes to values exact in fp32, so the rows
// must equal the format's values bit for bit (repeated and unordered ids).
TEST_P(BackendOps, Embed) {
  auto be = make(2);
  const int32_t tokens[] = {3, 0, 10, 3, 7};
  struct T {
    DType t;
    int64_t cols, block;
  };
  for (const T c : {T{DType::F32, 33, 128}, T{DType::BF16, 33, 128}, T{DType::F16, 5, 128}, T{DType::Q8_0, 96, 128},
                    T{DType::Q4_0, 64, 128}, T{DType::F8_E4M3, 67, 16}}) {
    const int64_t V = 11;
    const HostMatrix hm = encode(c.t, randn(size_t(V * c.cols), uint32_t(c.cols)), V, c.cols, c.block);
    const auto table = be->prepare_matrix(hm.stored(), WeightPrep{std::nullopt, true, true});
    DevBuf out(*be, size_t(5 * c.cols));
    be->embed(*table, tokens, 5, out.p());
    const auto values = decode(hm);
    std::vector<float> want;
    for (int32_t t : tokens) want.insert(want.end(), values.begin() + t * c.cols, values.begin() + (t + 1) * c.cols);
    ASSERT_TRUE(bit_equal(out.get(), want, c.cols)) << dtype_name(c.t);
  }
}

TEST_P(BackendOps, GatherRows) {
  auto be = make(2);
  const int64_t cols = 13;
  const int32_t idx[] = {8, 0, 3, 3, 5, 1, 8};
  const auto src = randn(size_t(9 * cols), 3);
  DevBuf s(*be, src), d(*be, size_t(7 * cols));
  be->gather_rows(s.p(), cols, idx, 7, d.p());
  std::vector<float> want;
  for (int32_t i : idx) want.insert(want.end(), src.begin() + i * cols, src.begin() + (i + 1) * cols);
  ASSERT_TRUE(bit_equal(d.get(), want, cols));
}

// scatter_add's fixed order. Every w·y below is exact in fp32 (powers of two times small
// integers), so the result is defined bit for bit by adding them to out in order j = 0..n-1,
// whether or not the product is fused; the sums mix ±2^24 with small values, so any other
// order gives other bits (checked on the reference itself).
TEST_P(BackendOps, ScatterAddFixedOrder) {
  auto be = make(2);
  const int64_t rows = 4, cols = 13, n = 24;
  std::mt19937 rng(5);
  const float big = 16777216.f;
  const float ys[] = {big, -big, big / 2, 1.f, -1.f, 3.f, 0.5f, -3.f, 1.5f};
  const float ws[] = {1.f, -1.f, 2.f, 0.5f};
  std::vector<float> y(size_t(n * cols)), w(static_cast<size_t>(n)), out0(size_t(rows * cols));
  std::vector<int32_t> ri(static_cast<size_t>(n));
  for (auto& v : y) v = ys[rng() % std::size(ys)];
  for (auto& v : out0) v = ys[rng() % std::size(ys)];
  for (int64_t j = 0; j < n; ++j) w[size_t(j)] = ws[rng() % 4], ri[size_t(j)] = int32_t(rng() % 3 == 0 ? 3 : rng() % 3);
  auto reference = [&](bool reversed) {
    std::vector<float> o = out0;
    for (int64_t jj = 0; jj < n; ++jj) {
      const int64_t j = reversed ? n - 1 - jj : jj;
      for (int64_t c = 0; c < cols; ++c) o[size_t(ri[size_t(j)] * cols + c)] += w[size_t(j)] * y[size_t(j * cols + c)];
    }
    return o;
  };
  const auto want = reference(false);
  ASSERT_FALSE(bit_equal(reference(true), want)) << "the test data does not depend on the order";
  DevBuf dy(*be, y), dout(*be, out0);
  be->scatter_add(dy.p(), cols, ri.data(), w.data(), n, dout.p());
  ASSERT_TRUE(bit_equal(dout.get(), want, cols));
}

// scatter_add on general values, in double: each of a row's k additions rounds once (and its
// product once): tol = (k + 2)·u·(|out| + Σ|w·y|).
TEST_P(BackendOps, ScatterAddValues) {
  auto be = make(2);
  const int64_t rows = 5, cols = 67, n = 11;
  const auto y = randn(size_t(n * cols), 7), w = randn(size_t(n), 8), out0 = randn(size_t(rows * cols), 9);
  const std::vector<int32_t> ri = {4, 0, 0, 2, 4, 4, 1, 0, 2, 4, 3};
  std::vector<double> want = to_double(out0), mag(want.size());
  std::vector<int> k(static_cast<size_t>(rows));
  for (size_t i = 0; i < mag.size(); ++i) mag[i] = std::fabs(want[i]);
  for (int64_t j = 0; j < n; ++j) {
    ++k[size_t(ri[size_t(j)])];
    for (int64_t c = 0; c < cols; ++c) {
      const double p = double(w[size_t(j)]) * y[size_t(j * cols + c)];
      want[size_t(ri[size_t(j)] * cols + c)] += p;
      mag[size_t(ri[size_t(j)] * cols + c)] += std::fabs(p);
    }
  }
  std::vector<double> tol(want.size());
  for (size_t i = 0; i < tol.size(); ++i) tol[i] = double(k[i / size_t(cols)] + 2) * kU * mag[i];
  DevBuf dy(*be, y), dout(*be, out0);
  be->scatter_add(dy.p(), cols, ri.data(), w.data(), n, dout.p());
  ASSERT_TRUE(within(dout.get(), want, tol, cols));
}

// ---- moe_route against a naive DeepSeekMoE gate (written from the model definition)

struct RouteRef {
  std::vector<int32_t> ids;
  std::vector<double> w;
  double margin = INFINITY;  // smallest gap at a selection boundary (groups, then experts)
};

// The k best of v, best first, ties to the lower index; records the gap at the boundary.
std::vector<int32_t> naive_topk(const std::vector<double>& v, int64_t k, double& margin) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[size_t(a)] > v[size_t(b)]; });
  for (int64_t i = 0; i + 1 < int64_t(v.size()) && i < k; ++i)
    if (std::isfinite(v[size_t(idx[size_t(i + 1)])])) margin = std::min(margin, v[size_t(idx[size_t(i)])] - v[size_t(idx[size_t(i + 1)])]);
  idx.resize(size_t(k));
  return idx;
}

RouteRef naive_route(const RouterConfig& rc, const float* logits, const float* bias) {
  const int64_t E = rc.n_experts;
  std::vector<double> score(static_cast<size_t>(E)), choice(static_cast<size_t>(E));
  double mx = -INFINITY, sum = 0;
  for (int64_t e = 0; e < E; ++e) mx = std::max(mx, double(logits[e]));
  for (int64_t e = 0; e < E; ++e) {
    score[size_t(e)] = rc.scoring == ScoringFunc::Softmax ? std::exp(logits[e] - mx) : 1 / (1 + std::exp(-double(logits[e])));
    sum += score[size_t(e)];
  }
  RouteRef r;
  for (int64_t e = 0; e < E; ++e) {
    if (rc.scoring == ScoringFunc::Softmax) score[size_t(e)] /= sum;
    choice[size_t(e)] = score[size_t(e)] + (bias ? bias[e] : 0.0);
  }
  if (rc.method != TopkMethod::Greedy && rc.n_group > 1) {
    const int64_t per = E / rc.n_group;
    std::vector<double> gs(size_t(rc.n_group));
    for (int64_t g = 0; g < rc.n_group; ++g) {
      std::vector<double> grp(choice.begin() + g * per, choice.begin() + (g + 1) * per);
      std::sort(grp.rbegin(), grp.rend());
      gs[size_t(g)] = rc.method == TopkMethod::NoauxTc ? grp[0] + grp[1] : grp[0];
    }
    const auto keep = naive_topk(gs, rc.topk_group, r.margin);
    for (int64_t g = 0; g < rc.n_group; ++g)
      if (std::find(keep.begin(), keep.end(), g) == keep.end())
        for (int64_t e = g * per; e < (g + 1) * per; ++e) choice[size_t(e)] = -INFINITY;
  }
  r.ids = naive_topk(choice, rc.top_k, r.margin);
  double s = 0;
  for (int32_t id : r.ids) s += score[size_t(id)];
  for (int32_t id : r.ids)
    r.w.push_back(score[size_t(id)] / (rc.norm_topk_prob ? s : 1.0) * rc.routed_scaling_factor);
  return r;
}

// ids exactly (selection order included); weights within (E + K + 16)·u relative: the scores
// are one exp (2 ulp) and, for softmax, a sum of E terms; normalizing adds K·u, scaling u.
// Logits are drawn until every selection boundary has a gap of 1e-4 at least, far above any
// rounding, so the selection is the same in any precision.
void check_route(Backend& be, const RouterConfig& rc, bool with_bias, uint32_t seed, const char* what) {
  const int64_t E = rc.n_experts, K = rc.top_k, rows = 5;
  std::vector<float> logits(size_t(rows * E)), bias;
  if (with_bias) bias = randn(size_t(E), seed + 1000, 0.1f);
  std::vector<RouteRef> refs;
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.5f);
  for (int64_t i = 0; i < rows; ++i)
    for (int attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 1000) << what << ": no well-separated logits";
      for (int64_t e = 0; e < E; ++e) logits[size_t(i * E + e)] = nd(rng);
      RouteRef r = naive_route(rc, logits.data() + i * E, with_bias ? bias.data() : nullptr);
      if (r.margin >= 1e-4) {
        refs.push_back(std::move(r));
        break;
      }
    }
  const auto wb = with_bias ? be.prepare_vector(bias) : nullptr;
  DevBuf dl(be, logits);
  std::vector<int32_t> ids(size_t(rows * K), -1);
  std::vector<float> w(size_t(rows * K), NAN);
  be.moe_route(rc, dl.p(), rows, wb.get(), ids.data(), w.data());
  std::vector<double> want;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t k = 0; k < K; ++k)
      ASSERT_EQ(ids[size_t(i * K + k)], refs[size_t(i)].ids[size_t(k)]) << what << ": row " << i << ", choice " << k;
    want.insert(want.end(), refs[size_t(i)].w.begin(), refs[size_t(i)].w.end());
  }
  ASSERT_TRUE(within(w, want, 1e-37, double(E + K + 16) * kU, K)) << what;
}

TEST_P(BackendOps, MoeRoute) {
  auto be = make(2);
  RouterConfig rc;
  // DeepSeek-V3: sigmoid scores, bias-corrected group-limited selection, normalized, scaled.
  rc = {64, 6, 8, 3, ScoringFunc::Sigmoid, TopkMethod::NoauxTc, true, 2.5};
  check_route(*be, rc, true, 1, "sigmoid noaux_tc norm");
  rc.norm_topk_prob = false;
  check_route(*be, rc, true, 2, "sigmoid noaux_tc");
  check_route(*be, rc, false, 3, "sigmoid noaux_tc without bias");
  // DeepSeek-V2: softmax with group-limited greedy; V2-Lite: plain greedy.
  rc = {32, 4, 4, 2, ScoringFunc::Softmax, TopkMethod::GroupLimitedGreedy, false, 16.0};
  check_route(*be, rc, false, 4, "softmax group_limited_greedy");
  rc = {17, 3, 1, 1, ScoringFunc::Softmax, TopkMethod::Greedy, false, 1.0};
  check_route(*be, rc, false, 5, "softmax greedy");
  rc.norm_topk_prob = true;
  check_route(*be, rc, false, 6, "softmax greedy norm");
  rc = {24, 5, 3, 2, ScoringFunc::Sigmoid, TopkMethod::Greedy, true, 1.5};  // groups ignored by greedy
  check_route(*be, rc, true, 7, "sigmoid greedy with bias");
}

// The probe streams memory and reports a plausible rate.
TEST_P(BackendOps, BandwidthProbe) {
  auto be = make(2);
  const size_t bytes = size_t(8) << 20;
  auto probe = be->bandwidth_probe(bytes);
  for (int i = 0; i < 2; ++i) {
    const BandwidthProbe::Sample s = probe->read_for(0.002);
    EXPECT_GT(s.bytes, 0);
    EXPECT_GT(s.seconds, 0);
    EXPECT_TRUE(std::isfinite(s.best_gbs) && s.best_gbs > 0) << s.best_gbs;
    EXPECT_LT(s.bytes / s.seconds / 1e9, 1e5) << "GB/s";
    EXPECT_GE(s.best_gbs * 1.0001, s.bytes / s.seconds / 1e9) << "the fastest slice is not below the mean";
  }
  EXPECT_LE(probe->resident_bytes(), 2 * bytes + (size_t(4) << 20));
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendOps, ::testing::ValuesIn(backend_factories()), factory_name);

}  // namespace
}  // namespace fathom::opstest
