#pragma once
// Double-precision reference forms of the training ops, written plainly (one loop per
// formula) for the op and layer tests, and a central-difference gradient checker over them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/random.h"
#include "layers/rope.h"

namespace fathom::train::ref {

using Vec = std::vector<double>;

// Uniform in [lo, hi), reproducible from the seed.
inline std::vector<float> rand_f(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i)
    v[i] = lo + (hi - lo) * float(double(splitmix64(seed * 1000003 + i) >> 11) * 0x1.0p-53);
  return v;
}
inline Vec to_d(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

// y[R, N] = x[R, K] Wᵀ (+ b)
inline Vec linear(const Vec& x, const Vec& W, int64_t R, int64_t K, int64_t N, const Vec* b = nullptr) {
  Vec y(size_t(R * N), 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t n = 0; n < N; ++n) {
      double acc = b ? (*b)[size_t(n)] : 0.0;
      for (int64_t k = 0; k < K; ++k) acc += x[size_t(r * K + k)] * W[size_t(n * K + k)];
      y[size_t(r * N + n)] = acc;
    }
  return y;
}

// RMSNorm of columns [off, off + dim) of x[R, ld]: y[R, dim].
inline Vec rmsnorm(const Vec& x, int64_t ld, int64_t off, const Vec& w, int64_t R, int64_t dim, double eps) {
  Vec y(size_t(R * dim));
  for (int64_t r = 0; r < R; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += x[size_t(r * ld + off + i)] * x[size_t(r * ld + off + i)];
    const double inv = 1.0 / std::sqrt(ss / double(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) y[size_t(r * dim + i)] = w[size_t(i)] * x[size_t(r * ld + off + i)] * inv;
  }
  return y;
}

// Rotates, in place, `heads` vectors of width rope.dim per row of x[R, ld] (head h at
// h*stride + off); row r sits at position r % T. Angles as transformers forms them in fp32.
inline void rope(Vec& x, int64_t R, int64_t T, int64_t ld, int64_t heads, int64_t stride, int64_t off,
                 const Rope& rp, int64_t dim, bool interleaved) {
  const int64_t half = dim / 2;
  for (int64_t r = 0; r < R; ++r)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const float ang = float(r % T) * rp.inv_freq()[size_t(i)];
        const double c = std::cos(double(ang)) * rp.attention_factor(), s = std::sin(double(ang)) * rp.attention_factor();
        const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        double& x0 = x[size_t(r * ld + h * stride + off + a)];
        double& x1 = x[size_t(r * ld + h * stride + off + b)];
        const double y0 = x0 * c - x1 * s, y1 = x1 * c + x0 * s;
        x0 = y0;
        x1 = y1;
      }
}

// Causal attention per sequence; q [R, H, dqk], k [R, Hkv, dqk], v [R, Hkv, dv] → [R, H, dv].
inline Vec attention(const Vec& q, const Vec& k, const Vec& v, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                     int64_t dqk, int64_t dv, double scale, Vec* probs = nullptr) {
  Vec out(size_t(B * T * H * dv), 0.0), sc(size_t(T), 0.0);
  if (probs) probs->assign(size_t(B * H * T * T), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / (H / Hkv);
      for (int64_t i = 0; i < T; ++i) {
        double mx = -1e300;
        for (int64_t j = 0; j <= i; ++j) {
          double d = 0;
          for (int64_t c = 0; c < dqk; ++c)
            d += q[size_t(((b * T + i) * H + h) * dqk + c)] * k[size_t(((b * T + j) * Hkv + kh) * dqk + c)];
          sc[size_t(j)] = d * scale;
          mx = std::max(mx, sc[size_t(j)]);
        }
        double sum = 0;
        for (int64_t j = 0; j <= i; ++j) sum += (sc[size_t(j)] = std::exp(sc[size_t(j)] - mx));
        for (int64_t j = 0; j <= i; ++j) {
          const double p = sc[size_t(j)] / sum;
          if (probs) (*probs)[size_t(((b * H + h) * T + i) * T + j)] = p;
          for (int64_t c = 0; c < dv; ++c)
            out[size_t(((b * T + i) * H + h) * dv + c)] += p * v[size_t(((b * T + j) * Hkv + kh) * dv + c)];
        }
      }
    }
  return out;
}

inline double dot(const Vec& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * double(b[i]);
  return s;
}

// Checks an analytic gradient g of a scalar loss L against central differences of L in
// double, with x the variable L reads (perturbed in place and restored):
//  - along `dirs` random ±1 directions u: <g, u> against (L(x + hu) - L(x - hu)) / 2h;
//  - at `coords` random coordinates.
// With L in double, h = 1e-4 leaves a truncation error O(h²) ~ 1e-8 relative and rounding
// ~ 1e-12, so the difference is the fp32 analytic gradient's own error: a few 1e-6 relative
// (accumulations over ≤ a few hundred terms, a handful of ops deep). Tolerance: 2e-4 of
// |expected| plus a floor at the gradient's scale: 1e-4 of its L2 norm for a direction,
// 2e-5 of its largest entry for a coordinate. Any wrong term or missing path moves the result by O(1) of it.
inline void check_grad(const std::string& what, Vec& x, const std::vector<float>& g, const std::function<double()>& L,
                       uint64_t seed, int dirs = 2, int coords = 6) {
  ASSERT_EQ(x.size(), g.size()) << what;
  const double h = 1e-4;
  double gnorm = 0, gmax = 0;
  for (float v : g) {
    gnorm += double(v) * v;
    gmax = std::max(gmax, double(std::fabs(v)));
  }
  gnorm = std::sqrt(gnorm);
  ASSERT_GT(gmax, 0.0) << what << ": gradient is all zero";
  auto central = [&](const Vec& u) {
    const Vec x0 = x;
    for (size_t i = 0; i < x.size(); ++i) x[i] = x0[i] + h * u[i];
    const double lp = L();
    for (size_t i = 0; i < x.size(); ++i) x[i] = x0[i] - h * u[i];
    const double lm = L();
    x = x0;
    return (lp - lm) / (2 * h);
  };
  for (int d = 0; d < dirs; ++d) {
    Vec u(x.size());
    for (size_t i = 0; i < u.size(); ++i) u[i] = (splitmix64(seed * 7919 + d * 104729 + i) & 1) ? 1.0 : -1.0;
    const double fd = central(u), an = dot(u, g);
    EXPECT_NEAR(an, fd, 2e-4 * std::fabs(fd) + 1e-4 * gnorm)
        << what << ": direction " << d;
  }
  for (int c = 0; c < coords; ++c) {
    const size_t i = size_t(splitmix64(seed * 31 + c) % x.size());
    Vec u(x.size(), 0.0);
    u[i] = 1.0;
    const double fd = central(u);
    EXPECT_NEAR(double(g[i]), fd, 2e-4 * std::fabs(fd) + 2e-5 * gmax) << what << ": coordinate " << i;
  }
}

}  // namespace fathom::train::ref
