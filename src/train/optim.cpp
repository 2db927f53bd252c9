#include "train/optim.h"

#include <algorithm>
#include <cmath>
#include <numbers>

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

void AdamW::step(double lr, ThreadPool* pool, float grad_scale) {
  ++t_;
  // The per-step scalars are formed in double and applied in fp32, as torch's fp32 kernels do.
  const double bc1 = 1 - std::pow(cfg_.beta1, double(t_));
  const double bc2 = 1 - std::pow(cfg_.beta2, double(t_));
  const float step_size = float(lr / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float b2 = float(cfg_.beta2);
  const float c1 = float(1 - cfg_.beta1), c2 = float(1 - cfg_.beta2);
  const float eps = float(cfg_.eps);
  const float keep = float(1 - lr * cfg_.weight_decay);
  auto update = [&](size_t i) {
    Param& p = *params_[i];
    if (!p.trainable) return;
    const size_t n = size_t(p.numel());
    FATHOM_CHECK(p.w.size() == n && p.g.size() == n && m_[i].size() == n,
                 "adamw: {} has {} weights and {} gradients for shape {} ({} moments)", p.name, p.w.size(),
                 p.g.size(), n, m_[i].size());
    float* w = p.w.data();
    const float* g = p.g.data();
    float* m = m_[i].data();
    float* v = v_[i].data();
    const bool decay = p.decay && cfg_.weight_decay != 0;
    for (size_t k = 0; k < n; ++k) {
      if (decay) w[k] *= keep;
      const float gk = g[k] * grad_scale;  // as clip_grad_norm's in-place scaling rounds it
      m[k] += c1 * (gk - m[k]);  // lerp toward g: torch's rounding
      v[k] = v[k] * b2 + c2 * gk * gk;
      const float denom = std::sqrt(v[k]) / bc2_sqrt + eps;
      w[k] -= step_size * (m[k] / denom);
    }
  };
  if (pool && pool->size() > 1)
    pool->parallel_for(int64_t(params_.size()), 1, [&](int64_t b, int64_t e, int) {
      for (int64_t i = b; i < e; ++i) update(size_t(i));
    });
  else
    for (size_t i = 0; i < params_.size(); ++i) update(i);
}

double grad_norm(const std::vector<Param*>& params, ThreadPool* pool) {
  std::vector<double> part(params.size(), 0.0);  // [params] each tensor's sum of squares
  auto one = [&](size_t i) {
    const Param* p = params[i];
    if (!p->trainable) return;
    double ss = 0;
    for (float x : p->g) ss += double(x) * double(x);
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
