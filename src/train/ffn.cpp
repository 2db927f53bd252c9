#include "train/ffn.h"
#include "train/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/vmath.h"
#include "backend/routing.h"
#include "train/blas.h"

namespace fathom::train {
namespace {

float* grad_of(const Param* p) { return p && !p->g.empty() ? const_cast<float*>(p->g.data()) : nullptr; }

// y[rows, n] += b[n]
void add_bias(float* y, const float* b, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) y[r * n + j] += b[j];
}

// db[n] += Σ_r dy[r, n]
void bias_grad(const float* dy, float* db, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) db[j] += dy[r * n + j];
}


// Runs fn(begin, end) over [0, n) on the pool, or inline without one.
template <typename F>
void for_range(ThreadPool* pool, int64_t n, int64_t grain, F&& fn) {
  if (!pool || n <= grain) {
    if (n > 0) fn(int64_t(0), n);
    return;
  }
  pool->parallel_for(n, grain, [&](int64_t b, int64_t e, int) { fn(b, e); });
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// SwiGLU MLP

TrainMlp::TrainMlp(MlpParams p) : p_(p) {}

void TrainMlp::forward(int64_t rows, const float* x, float* y, MlpSaved& sv, bool accumulate,
                       const Compute& cx) const {
  const int64_t I = p_.gate->shape[0], D = p_.gate->shape[1];
  sv.g.resize(size_t(rows * I));
  sv.u.resize(size_t(rows * I));
  sv.h.resize(size_t(rows * I));
  linear_fwd(cx, x, p_.gate->w.data(), sv.g.data(), rows, D, I);
  linear_fwd(cx, x, p_.up->w.data(), sv.u.data(), rows, D, I);
  if (p_.gate_bias) add_bias(sv.g.data(), p_.gate_bias->w.data(), rows, I);
  if (p_.up_bias) add_bias(sv.u.data(), p_.up_bias->w.data(), rows, I);
  for_range(cx.pool, rows * I, 1 << 14, [&](int64_t b, int64_t e) {
    swiglu_fwd(sv.g.data() + b, sv.u.data() + b, sv.h.data() + b, e - b);
  });
  linear_fwd(cx, sv.h.data(), p_.down->w.data(), y, rows, I, D, accumulate);
  if (p_.down_bias) add_bias(y, p_.down_bias->w.data(), rows, D);
}

void TrainMlp::backward(int64_t rows, const MlpSaved& sv, const float* x, const float* dy, float* dx,
                        const Compute& cx) const {
  const int64_t I = p_.gate->shape[0], D = p_.gate->shape[1];
  if (rows == 0) return;
  std::vector<float> dg(size_t(rows * I), 0.0f), du(size_t(rows * I));  // [rows, I]
  // dh (into dg) = dy · W_down; dW_down += dyᵀ h
  linear_bwd(cx, dy, sv.h.data(), p_.down->w.data(), dg.data(), grad_of(p_.down), rows, I, D);
  if (p_.down_bias && grad_of(p_.down_bias)) bias_grad(dy, grad_of(p_.down_bias), rows, D);
  for_range(cx.pool, rows * I, 1 << 14, [&](int64_t b, int64_t e) {
    swiglu_bwd_inplace(dg.data() + b, sv.g.data() + b, sv.u.data() + b, du.data() + b, e - b);
  });
  linear_bwd(cx, dg.data(), x, p_.gate->w.data(), dx, grad_of(p_.gate), rows, D, I);
  linear_bwd(cx, du.data(), x, p_.up->w.data(), dx, grad_of(p_.up), rows, D, I);
  if (p_.gate_bias && grad_of(p_.gate_bias)) bias_grad(dg.data(), grad_of(p_.gate_bias), rows, I);
  if (p_.up_bias && grad_of(p_.up_bias)) bias_grad(du.data(), grad_of(p_.up_bias), rows, I);
}

// ---------------------------------------------------------------------------------------------
// DeepSeekMoE

TrainMoe::TrainMoe(const ModelConfig& cfg, MoeParams p) : cfg_(cfg), p_(std::move(p)), shared_(p_.shared) {
  experts_.reserve(p_.experts.size());
  for (const MlpParams& e : p_.experts) experts_.emplace_back(e);
}

void TrainMoe::forward(const Seqs& s, const float* x, float* y, MoeSaved& sv, const BalanceOpts& bal, MoeStats& stats,
                       const Compute& cx) const {
  ThreadPool* pool = cx.pool;
  const RouterConfig rc = RouterConfig::from(cfg_);
  const int64_t rows = s.rows(), D = cfg_.hidden_size, E = experts(), K = rc.top_k;
  const float scale = float(rc.routed_scaling_factor);

  // Router: scores start as the raw logits [rows, E]; route_token selects from them, then
  // they become sigmoid/softmax scores in place (the same float ops route_token weights with).
  sv.scores.resize(size_t(rows * E));
  sv.ids.resize(size_t(rows * K));
  sv.weights.resize(size_t(rows * K));
  linear_fwd(cx, x, p_.router->w.data(), sv.scores.data(), rows, D, E);
  const float* bias = p_.router_bias ? p_.router_bias->w.data() : nullptr;
  for_range(pool, rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> scratch(size_t(2 * E + K));  // route_token's [2E] + its weights [K]
    for (int64_t r = r0; r < r1; ++r) {
      float* sc = sv.scores.data() + r * E;
      int32_t* ids = sv.ids.data() + r * K;
      route_token(rc, sc, bias, ids, scratch.data() + 2 * E, scratch.data());
      if (rc.scoring == ScoringFunc::Softmax) cpu::softmax(sc, E);
      else
        for (int64_t e = 0; e < E; ++e) sc[e] = 1.0f / (1.0f + std::exp(-sc[e]));
      float* w = sv.weights.data() + r * K;
      float sum = 0.0f;
      for (int64_t k = 0; k < K; ++k) sum += (w[k] = sc[ids[k]]);
      if (rc.norm_topk_prob)
        for (int64_t k = 0; k < K; ++k) w[k] /= (sum + 1e-20f);
      for (int64_t k = 0; k < K; ++k) w[k] *= scale;
    }
  });

  // Group rows by expert, in ascending row order; pos[r, k] is row r's index among expert ids[r, k]'s rows.
  sv.rows_of.resize(size_t(E));
  sv.slot_of.resize(size_t(E));
  sv.xe.resize(size_t(E));
  sv.ye.resize(size_t(E));
  sv.expert.resize(size_t(E));
  for (int64_t e = 0; e < E; ++e) {
    sv.rows_of[e].clear();
    sv.slot_of[e].clear();
  }
  std::vector<int32_t> pos(size_t(rows * K));  // [rows, K]
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = sv.ids[r * K + k];
      pos[r * K + k] = int32_t(sv.rows_of[e].size());
      sv.rows_of[e].push_back(int32_t(r));
      sv.slot_of[e].push_back(int32_t(k));
    }
  if (stats.load.size() < size_t(E)) stats.load.resize(size_t(E), 0.0);
  for (int64_t e = 0; e < E; ++e) stats.load[e] += double(sv.rows_of[e].size());

  // Experts, each over its gathered rows.
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int32_t>& re = sv.rows_of[e];
    const int64_t n = int64_t(re.size());
    sv.xe[e].resize(size_t(n * D));
    sv.ye[e].resize(size_t(n * D));
    for_range(pool, n, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) std::memcpy(sv.xe[e].data() + j * D, x + int64_t(re[j]) * D, sizeof(float) * D);
    });
    if (n > 0) experts_[e].forward(n, sv.xe[e].data(), sv.ye[e].data(), sv.expert[e], false, cx);
  }

  // y = shared(x) + Σ_k w_k · expert_{ids_k}(x)
  if (p_.shared.gate) shared_.forward(rows, x, y, sv.shared, false, cx);
  else std::fill(y, y + rows * D, 0.0f);
  for_range(pool, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* yr = y + r * D;
      for (int64_t k = 0; k < K; ++k) {
        const float w = sv.weights[r * K + k];
        const float* ye = sv.ye[sv.ids[r * K + k]].data() + int64_t(pos[r * K + k]) * D;
        for (int64_t d = 0; d < D; ++d) yr[d] += w * ye[d];
      }
    }
  });

  // Balance: f[b, i] = E / (K T) · (rows of sequence b choosing i); P_i = mean_t s'_{i,t}.
  sv.f.assign(size_t(s.B * E), 0.0f);
  const float fscale = float(double(E) / double(K * s.T));
  for (int64_t b = 0; b < s.B; ++b) {
    float* f = sv.f.data() + b * E;
    for (int64_t r = b * s.T; r < (b + 1) * s.T; ++r)
      for (int64_t k = 0; k < K; ++k) f[sv.ids[r * K + k]] += 1.0f;
    for (int64_t e = 0; e < E; ++e) f[e] *= fscale;
  }
  if (bal.alpha == 0) return;
  for (int64_t b = 0; b < s.B; ++b) {
    const float* f = sv.f.data() + b * E;
    double lb = 0;
    for (int64_t r = b * s.T; r < (b + 1) * s.T; ++r) {
      const float* sc = sv.scores.data() + r * E;
      double sum = 1, dot = 0;
      if (rc.scoring == ScoringFunc::Sigmoid) {
        sum = 0;
        for (int64_t e = 0; e < E; ++e) sum += sc[e];
      }
      for (int64_t e = 0; e < E; ++e) dot += double(f[e]) * sc[e];
      lb += dot / sum;
    }
    stats.balance += bal.alpha * lb / double(s.T);
  }
}

void TrainMoe::backward(const Seqs& s, const MoeSaved& sv, const float* x, const float* dy, float* dx,
                        const BalanceOpts& bal, const Compute& cx) const {
  ThreadPool* pool = cx.pool;
  const RouterConfig rc = RouterConfig::from(cfg_);
  const int64_t rows = s.rows(), D = cfg_.hidden_size, E = experts(), K = rc.top_k;
  const float scale = float(rc.routed_scaling_factor);

  if (p_.shared.gate) shared_.backward(rows, sv.shared, x, dy, dx, cx);

  // Experts: d ye = w · dy on each gathered row, and dL/dw = dy · ye.
  std::vector<float> dw(size_t(rows * K));  // [rows, K]
  size_t max_n = 0;
  for (const auto& re : sv.rows_of) max_n = std::max(max_n, re.size());
  std::vector<float> dye(max_n * size_t(D)), dxe(max_n * size_t(D));  // [n_e, D]
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int32_t>& re = sv.rows_of[e];
    const std::vector<int32_t>& ke = sv.slot_of[e];
    const int64_t n = int64_t(re.size());
    if (n == 0) continue;
    const float* ye = sv.ye[e].data();
    for_range(pool, n, 32, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        const int64_t rk = int64_t(re[j]) * K + ke[j];
        const float* dyr = dy + int64_t(re[j]) * D;
        const float w = sv.weights[rk];
        float acc = 0.0f;
        for (int64_t d = 0; d < D; ++d) {
          acc += dyr[d] * ye[j * D + d];
          dye[j * D + d] = w * dyr[d];
        }
        dw[rk] = acc;
      }
    });
    std::fill(dxe.begin(), dxe.begin() + n * D, 0.0f);
    experts_[e].backward(n, sv.expert[e], sv.xe[e].data(), dye.data(), dxe.data(), cx);
    for_range(pool, n, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        float* dxr = dx + int64_t(re[j]) * D;
        for (int64_t d = 0; d < D; ++d) dxr[d] += dxe[j * D + d];
      }
    });
  }

  // Scores' gradient [rows, E]: through the gating weights, then the balance loss; then through
  // sigmoid/softmax into the router logits (in place).
  std::vector<float> dl(size_t(rows * E), 0.0f);  // [rows, E]
  const bool balance = bal.alpha != 0;
  for_range(pool, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* sc = sv.scores.data() + r * E;
      const int32_t* ids = sv.ids.data() + r * K;
      const float* dwr = dw.data() + r * K;
      float* ds = dl.data() + r * E;
      if (rc.norm_topk_prob) {  // w_k = c s_k / Z, Z = Σ_k s_k + ε
        double z = 0, dot = 0;
        for (int64_t k = 0; k < K; ++k) z += sc[ids[k]];
        z += 1e-20;
        for (int64_t k = 0; k < K; ++k) dot += double(dwr[k]) * sc[ids[k]];
        for (int64_t k = 0; k < K; ++k) ds[ids[k]] += float(scale * (dwr[k] - dot / z) / z);
      } else {
        for (int64_t k = 0; k < K; ++k) ds[ids[k]] += scale * dwr[k];
      }
      if (balance) {  // dL_b/ds'_{i,t} = α f_i / T, weighted by seq_weight
        const float* f = sv.f.data() + (r / s.T) * E;
        const double c = bal.alpha * bal.seq_weight / double(s.T);
        if (rc.scoring == ScoringFunc::Sigmoid) {  // s' = s / Σ_j s_j
          double sum = 0, dot = 0;
          for (int64_t e = 0; e < E; ++e) {
            sum += sc[e];
            dot += double(f[e]) * sc[e];
          }
          for (int64_t e = 0; e < E; ++e) ds[e] += float(c * (f[e] / sum - dot / (sum * sum)));
        } else {
          for (int64_t e = 0; e < E; ++e) ds[e] += float(c * f[e]);
        }
      }
      if (rc.scoring == ScoringFunc::Sigmoid) {
        for (int64_t e = 0; e < E; ++e) ds[e] *= sc[e] * (1.0f - sc[e]);
      } else {
        double dot = 0;
        for (int64_t e = 0; e < E; ++e) dot += double(ds[e]) * sc[e];
        for (int64_t e = 0; e < E; ++e) ds[e] = sc[e] * float(ds[e] - dot);
      }
    }
  });
  linear_bwd(cx, dl.data(), x, p_.router->w.data(), dx, grad_of(p_.router), rows, D, E);
}

}  // namespace fathom::train
