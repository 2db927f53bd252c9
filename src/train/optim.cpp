#include "train/optim.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "backend/cpu/matmul.h"
#include "core/error.h"

namespace fathom::train {

AdamW::AdamW(std::vector<Param*> params, AdamWConfig cfg) : params_(std::move(params)), cfg_(cfg) {
  FATHOM_CHECK(cfg_.beta1 >= 0 && cfg_.beta1 < 1, "adamw: beta1 must be in [0, 1), not {}", cfg_.beta1);
  FATHOM_CHECK(cfg_.beta2 >= 0 && cfg_.beta2 < 1, "adamw: beta2 must be in [0, 1), not {}", cfg_.beta2);
  FATHOM_CHECK(cfg_.eps >= 0, "adamw: eps must be >= 0, not {}", cfg_.eps);
  FATHOM_CHECK(cfg_.weight_decay >= 0, "adamw: weight_decay must be >= 0, not {}", cfg_.weight_decay);
  m_.resize(params_.size());
  v_.resize(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const Param& p = *params_[i];
    if (!p.trainable) continue;
    m_[i].assign(size_t(p.numel()), 0.f);
    v_[i].assign(size_t(p.numel()), 0.f);
  }
}

namespace {

// One update's scalars, applied in fp32 in the order torch's kernel applies them.
struct AdamScalars {
  float keep, grad_scale, c1, b2, c2, bc2_sqrt, eps, step_size;
  bool decay;
};

void adam_span_scalar(float* w, const float* g, float* m, float* v, size_t n, const AdamScalars& a) {
  for (size_t k = 0; k < n; ++k) {
    if (a.decay) w[k] *= a.keep;
    const float gk = g[k] * a.grad_scale;  // as clip_grad_norm's in-place scaling rounds it
    m[k] += a.c1 * (gk - m[k]);             // lerp toward g: torch's rounding
    v[k] = v[k] * a.b2 + a.c2 * gk * gk;
    const float denom = std::sqrt(v[k]) / a.bc2_sqrt + a.eps;
    w[k] -= a.step_size * (m[k] / denom);
  }
}

// The same operations eight lanes at a time (no FMA: the scalar loop has none), so both
// give the same bits; sqrt and division are correctly rounded in both.
__attribute__((target("avx2"))) void adam_span_avx2(float* w, const float* g, float* m, float* v, size_t n,
                                                      const AdamScalars& a) {
  const __m256 keep = _mm256_set1_ps(a.keep), gs = _mm256_set1_ps(a.grad_scale), c1 = _mm256_set1_ps(a.c1),
               b2 = _mm256_set1_ps(a.b2), c2 = _mm256_set1_ps(a.c2), bc = _mm256_set1_ps(a.bc2_sqrt),
               eps = _mm256_set1_ps(a.eps), st = _mm256_set1_ps(a.step_size);
  size_t k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 wk = _mm256_loadu_ps(w + k);
    if (a.decay) wk = _mm256_mul_ps(wk, keep);
    const __m256 gk = _mm256_mul_ps(_mm256_loadu_ps(g + k), gs);
    __m256 mk = _mm256_loadu_ps(m + k);
    mk = _mm256_add_ps(mk, _mm256_mul_ps(c1, _mm256_sub_ps(gk, mk)));
    const __m256 vk = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + k), b2), _mm256_mul_ps(_mm256_mul_ps(c2, gk), gk));
    const __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vk), bc), eps);
    wk = _mm256_sub_ps(wk, _mm256_mul_ps(st, _mm256_div_ps(mk, denom)));
    _mm256_storeu_ps(m + k, mk);
    _mm256_storeu_ps(v + k, vk);
    _mm256_storeu_ps(w + k, wk);
  }
  adam_span_scalar(w + k, g + k, m + k, v + k, n - k, a);
}

}  // namespace

void AdamW::step(double lr, ThreadPool* pool, float grad_scale) {
  ++t_;
  // The per-step scalars are formed in double and applied in fp32, as torch's fp32 kernels do.
  const double bc1 = 1 - std::pow(cfg_.beta1, double(t_));
  const double bc2 = 1 - std::pow(cfg_.beta2, double(t_));
  AdamScalars base{float(1 - lr * cfg_.weight_decay), grad_scale, float(1 - cfg_.beta1), float(cfg_.beta2),
                   float(1 - cfg_.beta2), float(std::sqrt(bc2)), float(cfg_.eps), float(lr / bc1), false};
  // Work in spans of at most 64K values, so the pool's threads get even shares however the
  // tensors' sizes fall.
  struct Span {
    size_t param, begin, end;
  };
  std::vector<Span> spans;
  constexpr size_t kSpan = size_t(1) << 16;
  for (size_t i = 0; i < params_.size(); ++i) {
    Param& p = *params_[i];
    if (!p.trainable) continue;
    const size_t n = size_t(p.numel());
    FATHOM_CHECK(p.w.size() == n && p.g.size() == n && m_[i].size() == n,
                 "adamw: {} has {} weights and {} gradients for shape {} ({} moments)", p.name, p.w.size(),
                 p.g.size(), n, m_[i].size());
    for (size_t b = 0; b < n; b += kSpan) spans.push_back({i, b, std::min(n, b + kSpan)});
  }
  const bool avx2 = cpu::cpu_has_avx2();
  auto run = [&](int64_t s0, int64_t s1, int) {
    for (int64_t s = s0; s < s1; ++s) {
      const Span& sp = spans[size_t(s)];
      Param& p = *params_[sp.param];
      AdamScalars a = base;
      a.decay = p.decay && cfg_.weight_decay != 0;
      float* w = p.w.data() + sp.begin;
      const float* g = p.g.data() + sp.begin;
      float* m = m_[sp.param].data() + sp.begin;
      float* v = v_[sp.param].data() + sp.begin;
      if (avx2) adam_span_avx2(w, g, m, v, sp.end - sp.begin, a);
      else adam_span_scalar(w, g, m, v, sp.end - sp.begin, a);
    }
  };
  if (pool && pool->size() > 1) pool->parallel_for(int64_t(spans.size()), 1, run);
  else run(0, int64_t(spans.size()), 0);
}

double grad_norm(const std::vector<Param*>& params, ThreadPool* pool) {
  std::vector<double> part(params.size(), 0.0);  // [params] each tensor's sum of squares
  auto one = [&](size_t i) {
    const Param* p = params[i];
    if (!p->trainable) return;
    // Blocks of 256 squares summed in 8 float lanes (a loop the compiler vectorizes), each
    // block's total added in double: exact enough, and the same on every thread count.
    const float* g = p->g.data();
    const size_t n = p->g.size();
    double ss = 0;
    for (size_t b = 0; b < n; b += 256) {
      const size_t e = std::min(n, b + 256);
      float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      size_t k = b;
      for (; k + 8 <= e; k += 8)
        for (int j = 0; j < 8; ++j) lane[j] += g[k + j] * g[k + j];
      double blk = 0;
      for (; k < e; ++k) blk += double(g[k]) * double(g[k]);
      for (int j = 0; j < 8; ++j) blk += double(lane[j]);
      ss += blk;
    }
    part[i] = ss;
  };
  if (pool && pool->size() > 1)
    pool->parallel_for(int64_t(params.size()), 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) one(size_t(i));
    });
  else
    for (size_t i = 0; i < params.size(); ++i) one(i);
  double ss = 0;
  for (double x : part) ss += x;
  return std::sqrt(ss);
}

float clip_coefficient(double norm, double max_norm) {
  if (max_norm <= 0 || !std::isfinite(norm)) return 1.0f;
  const double coef = max_norm / (norm + 1e-6);
  return coef >= 1 ? 1.0f : float(coef);
}

double clip_grad_norm(const std::vector<Param*>& params, double max_norm, ThreadPool* pool) {
  const double norm = grad_norm(params, pool);
  const float c = clip_coefficient(norm, max_norm);
  if (c == 1.0f) return norm;
  for (Param* p : params)
    if (p->trainable)
      for (float& x : p->g) x *= c;
  return norm;
}

ScheduleKind parse_schedule_kind(const std::string& s) {
  if (s == "constant") return ScheduleKind::Constant;
  if (s == "cosine") return ScheduleKind::Cosine;
  if (s == "wsd") return ScheduleKind::Wsd;
  fail("lr schedule must be constant, cosine or wsd, not '{}'", s);
}

const char* schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::Constant: return "constant";
    case ScheduleKind::Cosine: return "cosine";
    case ScheduleKind::Wsd: return "wsd";
  }
  return "?";
}

void Schedule::check() const {
  FATHOM_CHECK(std::isfinite(lr) && lr >= 0, "lr schedule: lr must be >= 0, not {}", lr);
  FATHOM_CHECK(warmup >= 0, "lr schedule: warmup must be >= 0 steps, not {}", warmup);
  FATHOM_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, "lr schedule: min_lr_ratio must be in [0, 1], not {}",
               min_lr_ratio);
  FATHOM_CHECK(decay_frac >= 0 && decay_frac <= 1, "lr schedule: decay_frac must be in [0, 1], not {}", decay_frac);
  if (kind != ScheduleKind::Constant) {
    FATHOM_CHECK(total > 0, "lr schedule: {} needs the total steps (> 0), not {}", schedule_name(kind), total);
    FATHOM_CHECK(warmup <= total, "lr schedule: warmup ({} steps) is longer than the run ({} steps)", warmup, total);
  }
}

int64_t Schedule::decay_start() const {
  const int64_t decay = int64_t(std::llround(decay_frac * double(total)));
  return std::max(warmup, total - decay);
}

double Schedule::lr_at(int64_t step) const {
  if (step < warmup) return lr * double(step + 1) / double(warmup);
  const double min_lr = lr * min_lr_ratio;
  switch (kind) {
    case ScheduleKind::Constant: return lr;
    case ScheduleKind::Cosine: {
      if (step >= total) return min_lr;
      const double x = double(step - warmup) / double(total - warmup);  // 0 → 1 over the decay
      return min_lr + 0.5 * (lr - min_lr) * (1 + std::cos(std::numbers::pi * x));
    }
    case ScheduleKind::Wsd: {
      const int64_t d0 = decay_start();
      if (step < d0) return lr;
      if (step >= total) return min_lr;
      return lr - (lr - min_lr) * double(step - d0) / double(total - d0);
    }
  }
  return lr;
}

}  // namespace fathom::train
