// The training MLP and MoE: forward against naive per-token loops in double (selection from
// route_token on the same logits, gating weights, loads and the balance loss recomputed by
// hand), and every gradient against central finite differences of
// L = Σ dy·y (+ the weighted balance loss), along random directions of each tensor and of x.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/routing.h"
#include "core/random.h"
#include "core/thread_pool.h"
#include "train/ffn.h"

namespace fathom::train {
namespace {

struct Rng {
  uint64_t state, i = 0;
  double uni() { return double(splitmix64(state * 0x9E3779B97F4A7C15ull + ++i) >> 11) * 0x1.0p-53 * 2 - 1; }  // [-1, 1)
};

std::vector<float> rand_vec(size_t n, Rng& rng, double scale = 1.0) {
  std::vector<float> v(n);
  for (float& x : v) x = float(rng.uni() * scale);
  return v;
}

using Owned = std::vector<std::unique_ptr<Param>>;

Param* make_param(Owned& owned, const std::string& name, std::vector<int64_t> shape, double scale, Rng& rng,
                  bool trainable = true) {
  auto p = std::make_unique<Param>();
  p->name = name;
  p->shape = std::move(shape);
  p->w = rand_vec(size_t(p->numel()), rng, scale);
  if (trainable) p->g.assign(p->w.size(), 0.0f);
  p->trainable = trainable;
  owned.push_back(std::move(p));
  return owned.back().get();
}

MlpParams make_mlp(Owned& owned, const std::string& name, int64_t D, int64_t I, bool bias, Rng& rng) {
  MlpParams m;
  m.gate = make_param(owned, name + ".gate", {I, D}, 1.5 / std::sqrt(double(D)), rng);
  m.up = make_param(owned, name + ".up", {I, D}, 1.5 / std::sqrt(double(D)), rng);
  m.down = make_param(owned, name + ".down", {D, I}, 1.5 / std::sqrt(double(I)), rng);
  if (bias) {
    m.gate_bias = make_param(owned, name + ".gate_bias", {I}, 0.3, rng);
    m.up_bias = make_param(owned, name + ".up_bias", {I}, 0.3, rng);
    m.down_bias = make_param(owned, name + ".down_bias", {D}, 0.3, rng);
  }
  return m;
}

// y[D] = down(silu(gate x + gb) * (up x + ub)) + db, in double.
std::vector<double> naive_mlp(const MlpParams& p, const float* x) {
  const int64_t I = p.gate->shape[0], D = p.gate->shape[1];
  std::vector<double> h(static_cast<size_t>(I)), y(static_cast<size_t>(D));
  for (int64_t i = 0; i < I; ++i) {
    double g = p.gate_bias ? p.gate_bias->w[i] : 0.0, u = p.up_bias ? p.up_bias->w[i] : 0.0;
    for (int64_t d = 0; d < D; ++d) {
      g += double(p.gate->w[i * D + d]) * x[d];
      u += double(p.up->w[i * D + d]) * x[d];
    }
    h[i] = g / (1 + std::exp(-g)) * u;
  }
  for (int64_t d = 0; d < D; ++d) {
    double acc = p.down_bias ? p.down_bias->w[d] : 0.0;
    for (int64_t i = 0; i < I; ++i) acc += double(p.down->w[d * I + i]) * h[i];
    y[d] = acc;
  }
  return y;
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

struct Eval {
  double loss = 0;
  std::vector<int32_t> ids;  // the selection (empty for the MLP)
};

// Central difference of f along a random direction of w, against Σ g·dw. Retries with a new
// direction when the perturbation flips any expert selection.
void check_direction(const std::string& what, std::vector<float>& w, const std::vector<float>& g,
                     const std::function<Eval()>& f, const std::vector<int32_t>& base_ids, Rng& rng) {
  const double eps = 2e-3;
  for (int attempt = 0; attempt < 10; ++attempt) {
    const std::vector<float> w0 = w, v = rand_vec(w.size(), rng);
    std::vector<float> wp(w.size()), wm(w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      wp[i] = float(w0[i] + eps * v[i]);
      wm[i] = float(w0[i] - eps * v[i]);
    }
    w = wp;
    const Eval ep = f();
    w = wm;
    const Eval em = f();
    w = w0;
    if (ep.ids != base_ids || em.ids != base_ids) continue;
    double an = 0, mag = 0;  // Σ g · (w+ - w-) / 2ε: the perturbation actually applied
    for (size_t i = 0; i < w.size(); ++i) {
      const double dw = (double(wp[i]) - wm[i]) / (2 * eps);
      an += double(g[i]) * dw;
      mag += std::abs(double(g[i]) * dw);
    }
    const double fd = (ep.loss - em.loss) / (2 * eps);
    EXPECT_NEAR(fd, an, 2e-4 * mag + 2e-5) << what;
    if (std::getenv("FFN_DBG")) std::printf("%-16s fd %.6g an %.6g mag %.4g err/mag %.2e\n", what.c_str(), fd, an, mag, std::abs(fd - an) / mag);
    return;
  }
  ADD_FAILURE() << what << ": the selection flipped on every direction tried";
}

// ---------------------------------------------------------------------------------------------
// MLP

void run_mlp_case(bool bias) {
  const int64_t rows = 9, D = 12, I = 10;
  Rng rng{bias ? 11u : 12u};
  Owned owned;
  const MlpParams p = make_mlp(owned, "mlp", D, I, bias, rng);
  TrainMlp mlp(p);
  std::vector<float> x = rand_vec(size_t(rows * D), rng), dy = rand_vec(size_t(rows * D), rng);

  MlpSaved sv;
  std::vector<float> y(size_t(rows * D), 7.0f);
  mlp.forward(rows, x.data(), y.data(), sv);
  for (int64_t r = 0; r < rows; ++r) {
    const auto ref = naive_mlp(p, x.data() + r * D);
    for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(y[r * D + d], ref[d], 1e-5) << r << "," << d;
  }
  // accumulate adds onto y
  std::vector<float> y2(size_t(rows * D), 1.0f);
  mlp.forward(rows, x.data(), y2.data(), sv, /*accumulate=*/true);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y2[i], y[i] + 1.0f, 1e-5);

  std::vector<float> dx(size_t(rows * D), 0.0f);
  mlp.backward(rows, sv, x.data(), dy.data(), dx.data());

  auto loss = [&]() {
    MlpSaved s2;
    std::vector<float> yy(size_t(rows * D));
    mlp.forward(rows, x.data(), yy.data(), s2);
    return Eval{dot(dy, yy), {}};
  };
  for (const auto& q : owned)
    for (int rep = 0; rep < 2; ++rep) check_direction(q->name, q->w, q->g, loss, {}, rng);
  for (int rep = 0; rep < 2; ++rep) check_direction("x", x, dx, loss, {}, rng);

  // Backward adds: a second pass doubles every gradient.
  std::vector<std::vector<float>> g1;
  for (const auto& q : owned) g1.push_back(q->g);
  const std::vector<float> dx1 = dx;
  mlp.backward(rows, sv, x.data(), dy.data(), dx.data());
  for (size_t t = 0; t < owned.size(); ++t)
    for (size_t i = 0; i < g1[t].size(); ++i) EXPECT_NEAR(owned[t]->g[i], 2 * g1[t][i], 1e-5 + 1e-5 * std::abs(g1[t][i]));
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx[i], 2 * dx1[i], 1e-5 + 1e-5 * std::abs(dx1[i]));
}

TEST(TrainMlp, ForwardAndGradientsWithoutBias) { run_mlp_case(false); }
TEST(TrainMlp, ForwardAndGradientsWithBias) { run_mlp_case(true); }

// ---------------------------------------------------------------------------------------------
// MoE

struct MoeSpec {
  Arch arch = Arch::DeepseekV3;
  ScoringFunc scoring = ScoringFunc::Sigmoid;
  TopkMethod method = TopkMethod::Greedy;
  int64_t E = 8, K = 2, n_group = 1, topk_group = 1, n_shared = 0;
  bool norm = false, router_bias = false;
  double scaling = 1.0, alpha = 0;
  int64_t B = 1, T = 10, D = 12, I = 6;
  uint64_t seed = 1;
};

struct MoeCase {
  ModelConfig cfg;
  Owned owned;
  MoeParams p;
  Seqs s;
  BalanceOpts bal;
};

std::unique_ptr<MoeCase> make_moe(const MoeSpec& sp, Rng& rng) {
  auto c = std::make_unique<MoeCase>();
  ModelConfig& cfg = c->cfg;
  cfg.arch = sp.arch;
  cfg.hidden_size = sp.D;
  cfg.n_routed_experts = sp.E;
  cfg.num_experts_per_tok = sp.K;
  cfg.n_shared_experts = sp.n_shared;
  cfg.moe_intermediate_size = sp.I;
  cfg.scoring_func = sp.scoring;
  cfg.topk_method = sp.method;
  cfg.n_group = sp.n_group;
  cfg.topk_group = sp.topk_group;
  cfg.norm_topk_prob = sp.norm;
  cfg.routed_scaling_factor = sp.scaling;
  c->p.router = make_param(c->owned, "router", {sp.E, sp.D}, 2.0 / std::sqrt(double(sp.D)), rng);
  if (sp.router_bias) c->p.router_bias = make_param(c->owned, "router_bias", {sp.E}, 0.3, rng, /*trainable=*/false);
  for (int64_t e = 0; e < sp.E; ++e)
    c->p.experts.push_back(make_mlp(c->owned, "expert" + std::to_string(e), sp.D, sp.I, false, rng));
  if (sp.n_shared > 0) c->p.shared = make_mlp(c->owned, "shared", sp.D, sp.n_shared * sp.I, false, rng);
  c->s = Seqs{sp.B, sp.T};
  c->bal.alpha = sp.alpha;
  c->bal.seq_weight = 1.0 / double(sp.B);
  return c;
}

// The forward against a per-token reference: route_token on the logits, the gating weights
// recomputed in double, each chosen expert's MLP run directly; loads, balance and the grouping.
void check_moe_forward(const MoeCase& c, const TrainMoe& moe, const std::vector<float>& x, ThreadPool* pool) {
  const ModelConfig& cfg = c.cfg;
  const int64_t rows = c.s.rows(), D = cfg.hidden_size, E = cfg.n_routed_experts, K = cfg.num_experts_per_tok;
  MoeSaved sv;
  MoeStats stats;
  stats.load.assign(size_t(E), 1.0);  // loads are added to
  stats.balance = 0.5;
  std::vector<float> y(size_t(rows * D), 3.0f);
  moe.forward(c.s, x.data(), y.data(), sv, c.bal, stats, pool);

  const RouterConfig rc = RouterConfig::from(cfg);
  const bool norm = cfg.arch == Arch::DeepseekV3 && cfg.norm_topk_prob;  // V2 never renormalizes
  std::vector<double> load(size_t(E), 0.0), scores(size_t(rows * E));
  std::vector<int32_t> ids(size_t(rows * K));
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * D;
    std::vector<double> lg(static_cast<size_t>(E));
    std::vector<float> lgf(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      double a = 0;
      for (int64_t d = 0; d < D; ++d) a += double(c.p.router->w[e * D + d]) * xr[d];
      lg[e] = a;
      lgf[e] = float(a);
    }
    double* sc = scores.data() + r * E;
    if (cfg.scoring_func == ScoringFunc::Sigmoid) {
      for (int64_t e = 0; e < E; ++e) sc[e] = 1 / (1 + std::exp(-lg[e]));
    } else {
      double mx = lg[0], sum = 0;
      for (double v : lg) mx = std::max(mx, v);
      for (int64_t e = 0; e < E; ++e) sum += (sc[e] = std::exp(lg[e] - mx));
      for (int64_t e = 0; e < E; ++e) sc[e] /= sum;
    }
    for (int64_t e = 0; e < E; ++e) EXPECT_NEAR(sv.scores[r * E + e], sc[e], 1e-5);

    std::vector<float> rw(static_cast<size_t>(K)), scratch(static_cast<size_t>(2 * E));
    route_token(rc, lgf.data(), c.p.router_bias ? c.p.router_bias->w.data() : nullptr, ids.data() + r * K, rw.data(),
                scratch.data());
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) {
      ASSERT_EQ(sv.ids[r * K + k], ids[r * K + k]) << "row " << r << " slot " << k;
      sum += sc[ids[r * K + k]];
    }
    std::vector<double> ref(size_t(D), 0.0);
    if (c.p.shared.gate) ref = naive_mlp(c.p.shared, xr);
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = ids[r * K + k];
      load[e] += 1;
      const double w = sc[e] / (norm ? sum : 1.0) * cfg.routed_scaling_factor;
      EXPECT_NEAR(sv.weights[r * K + k], w, 1e-5 * std::max(1.0, w));
      EXPECT_NEAR(sv.weights[r * K + k], rw[k], 1e-6 * std::max(1.0f, rw[k])) << "route_token's weight";
      const auto ye = naive_mlp(c.p.experts[e], xr);
      for (int64_t d = 0; d < D; ++d) ref[d] += w * ye[d];
    }
    for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(y[r * D + d], ref[d], 1e-4) << r << "," << d;
  }
  for (int64_t e = 0; e < E; ++e) EXPECT_EQ(stats.load[e], 1.0 + load[e]) << e;

  // Grouping: each expert's rows ascending, with their slot and gathered input.
  int64_t total = 0;
  for (int64_t e = 0; e < E; ++e) {
    ASSERT_EQ(sv.rows_of[e].size(), sv.slot_of[e].size());
    for (size_t j = 0; j < sv.rows_of[e].size(); ++j) {
      const int32_t r = sv.rows_of[e][j];
      if (j > 0) { EXPECT_LT(sv.rows_of[e][j - 1], r); }
      EXPECT_EQ(ids[r * K + sv.slot_of[e][j]], e);
      for (int64_t d = 0; d < D; ++d) EXPECT_EQ(sv.xe[e][j * D + d], x[r * D + d]);
    }
    total += int64_t(sv.rows_of[e].size());
  }
  EXPECT_EQ(total, rows * K);

  // Balance: per sequence, f_i = E/(K T) · count, P_i = mean_t s_i / Σ_j s_j (softmax: s).
  double bal = 0;
  for (int64_t b = 0; b < c.s.B; ++b) {
    std::vector<double> f(size_t(E), 0.0), P(size_t(E), 0.0);
    for (int64_t t = 0; t < c.s.T; ++t) {
      const int64_t r = b * c.s.T + t;
      double sum = 0;
      for (int64_t e = 0; e < E; ++e) sum += scores[r * E + e];
      for (int64_t k = 0; k < K; ++k) f[ids[r * K + k]] += double(E) / double(K * c.s.T);
      for (int64_t e = 0; e < E; ++e) P[e] += scores[r * E + e] / sum / double(c.s.T);
    }
    for (int64_t e = 0; e < E; ++e) {
      EXPECT_NEAR(sv.f[b * E + e], f[e], 1e-5);
      bal += c.bal.alpha * f[e] * P[e];
    }
  }
  EXPECT_NEAR(stats.balance, 0.5 + bal, 1e-6);
}

void check_moe_gradients(MoeCase& c, const TrainMoe& moe, std::vector<float>& x, Rng& rng, ThreadPool* pool) {
  const int64_t rows = c.s.rows(), D = c.cfg.hidden_size;
  const std::vector<float> dy = rand_vec(size_t(rows * D), rng);
  auto loss = [&]() {
    MoeSaved sv;
    MoeStats st;
    std::vector<float> y(size_t(rows * D));
    moe.forward(c.s, x.data(), y.data(), sv, c.bal, st, pool);
    return Eval{dot(dy, y) + c.bal.seq_weight * st.balance, sv.ids};
  };
  MoeSaved sv;
  MoeStats st;
  std::vector<float> y(size_t(rows * D));
  moe.forward(c.s, x.data(), y.data(), sv, c.bal, st, pool);
  std::vector<float> dx(size_t(rows * D), 0.0f);
  moe.backward(c.s, sv, x.data(), dy.data(), dx.data(), c.bal, pool);
  if (c.p.router_bias) { EXPECT_TRUE(c.p.router_bias->g.empty()); }

  for (const auto& q : c.owned) {
    if (!q->trainable) continue;
    const int reps = q.get() == c.p.router ? 4 : 1;
    for (int rep = 0; rep < reps; ++rep) check_direction(q->name, q->w, q->g, loss, sv.ids, rng);
  }
  // Single router coordinates too: a direction's sum could hide an error in a few entries.
  for (int rep = 0; rep < 6; ++rep) {
    std::vector<float>& w = c.p.router->w;
    const size_t i = size_t((rng.uni() + 1) / 2 * double(w.size())) % w.size();
    const float w0 = w[i], wp = float(w0 + 4e-3), wm = float(w0 - 4e-3);
    w[i] = wp;
    const Eval ep = loss();
    w[i] = wm;
    const Eval em = loss();
    w[i] = w0;
    if (ep.ids != sv.ids || em.ids != sv.ids) continue;
    EXPECT_NEAR((ep.loss - em.loss) / (double(wp) - wm), c.p.router->g[i], 1e-3 * std::abs(c.p.router->g[i]) + 5e-5)
        << "router[" << i << "]";
  }
  for (int rep = 0; rep < 3; ++rep) check_direction("x", x, dx, loss, sv.ids, rng);
}

std::vector<int32_t> selection(const MoeCase& c, const TrainMoe& moe, const std::vector<float>& x) {
  MoeSaved sv;
  MoeStats st;
  std::vector<float> y(x.size());
  moe.forward(c.s, x.data(), y.data(), sv, c.bal, st, nullptr);
  return sv.ids;
}

// An input whose selection survives perturbations of the router and of x several times the
// finite-difference step (near-ties would flip under the checks); redrawn until it does.
std::vector<float> draw_stable_input(MoeCase& c, const TrainMoe& moe, Rng& rng) {
  const size_t n = size_t(c.s.rows() * c.cfg.hidden_size);
  for (int attempt = 0; attempt < 20; ++attempt) {
    std::vector<float> x = rand_vec(n, rng);
    const std::vector<int32_t> base = selection(c, moe, x);
    const std::vector<float> w0 = c.p.router->w;
    bool stable = true;
    for (int probe = 0; probe < 8 && stable; ++probe) {
      const double eps = (probe % 2 ? -1 : 1) * 6e-3;
      const std::vector<float> vx = rand_vec(n, rng), vw = rand_vec(w0.size(), rng);
      std::vector<float> xp = x;
      for (size_t i = 0; i < n; ++i) xp[i] += float(eps * vx[i]);
      for (size_t i = 0; i < w0.size(); ++i) c.p.router->w[i] = float(w0[i] + eps * vw[i]);
      stable = selection(c, moe, xp) == base;
      c.p.router->w = w0;
    }
    if (stable) return x;
  }
  ADD_FAILURE() << "no input with a stable selection";
  return rand_vec(n, rng);
}

void run_moe_case(const MoeSpec& sp, ThreadPool* pool = nullptr) {
  Rng rng{sp.seed};
  auto c = make_moe(sp, rng);
  TrainMoe moe(c->cfg, c->p);
  std::vector<float> x = draw_stable_input(*c, moe, rng);
  check_moe_forward(*c, moe, x, pool);
  check_moe_gradients(*c, moe, x, rng, pool);
}

MoeSpec v3_like() {
  MoeSpec sp;
  sp.arch = Arch::DeepseekV3;
  sp.scoring = ScoringFunc::Sigmoid;
  sp.method = TopkMethod::NoauxTc;
  sp.E = 16;
  sp.K = 4;
  sp.n_group = 4;
  sp.topk_group = 2;
  sp.norm = true;
  sp.router_bias = true;
  sp.scaling = 2.5;
  sp.n_shared = 1;
  return sp;
}

TEST(TrainMoe, V3SigmoidNoauxTcWithBiasNormAndShared) { run_moe_case(v3_like()); }

TEST(TrainMoe, V2SoftmaxGreedyTwoShared) {
  MoeSpec sp;
  sp.arch = Arch::DeepseekV2;
  sp.scoring = ScoringFunc::Softmax;
  sp.method = TopkMethod::Greedy;
  sp.E = 8;
  sp.K = 3;
  sp.norm = true;  // ignored: V2 never renormalizes
  sp.scaling = 1.0;
  sp.n_shared = 2;
  sp.seed = 2;
  run_moe_case(sp);
}

TEST(TrainMoe, SoftmaxGroupLimitedGreedy) {
  MoeSpec sp;
  sp.arch = Arch::DeepseekV2;
  sp.scoring = ScoringFunc::Softmax;
  sp.method = TopkMethod::GroupLimitedGreedy;
  sp.E = 12;
  sp.K = 3;
  sp.n_group = 4;
  sp.topk_group = 2;
  sp.scaling = 1.5;
  sp.seed = 3;
  run_moe_case(sp);
}

TEST(TrainMoe, SoftmaxRenormalizedV3) {
  MoeSpec sp;
  sp.arch = Arch::DeepseekV3;
  sp.scoring = ScoringFunc::Softmax;
  sp.E = 8;
  sp.K = 3;
  sp.norm = true;
  sp.scaling = 0.7;
  sp.n_shared = 1;
  sp.seed = 4;
  run_moe_case(sp);
}

TEST(TrainMoe, SigmoidBalanceLossTwoSequences) {
  MoeSpec sp = v3_like();
  sp.alpha = 0.3;
  sp.B = 2;
  sp.T = 7;
  sp.seed = 5;
  run_moe_case(sp);
}

TEST(TrainMoe, SoftmaxBalanceLossTwoSequences) {
  MoeSpec sp;
  sp.arch = Arch::DeepseekV2;
  sp.scoring = ScoringFunc::Softmax;
  sp.E = 8;
  sp.K = 2;
  sp.alpha = 0.5;
  sp.B = 2;
  sp.T = 6;
  sp.seed = 6;
  run_moe_case(sp);
}

TEST(TrainMoe, PoolMatchesSerial) {
  MoeSpec sp = v3_like();
  sp.alpha = 0.1;
  sp.B = 3;
  sp.T = 40;  // enough rows that the pool splits the row loops
  sp.seed = 7;
  Rng rng{sp.seed};
  auto c = make_moe(sp, rng);
  TrainMoe moe(c->cfg, c->p);
  const int64_t rows = c->s.rows();
  const std::vector<float> x = rand_vec(size_t(rows * sp.D), rng), dy = rand_vec(size_t(rows * sp.D), rng);
  ThreadPool pool(3);
  check_moe_forward(*c, moe, x, &pool);

  std::vector<float> y[2], dx[2], g[2];
  for (int run = 0; run < 2; ++run) {
    for (auto& q : c->owned) std::fill(q->g.begin(), q->g.end(), 0.0f);
    MoeSaved sv;
    MoeStats st;
    y[run].resize(size_t(rows * sp.D));
    dx[run].assign(size_t(rows * sp.D), 0.0f);
    moe.forward(c->s, x.data(), y[run].data(), sv, c->bal, st, run ? &pool : nullptr);
    moe.backward(c->s, sv, x.data(), dy.data(), dx[run].data(), c->bal, run ? &pool : nullptr);
    g[run] = c->p.router->g;
  }
  for (size_t i = 0; i < y[0].size(); ++i) EXPECT_NEAR(y[0][i], y[1][i], 1e-6);
  for (size_t i = 0; i < dx[0].size(); ++i) EXPECT_NEAR(dx[0][i], dx[1][i], 1e-6);
  for (size_t i = 0; i < g[0].size(); ++i) EXPECT_NEAR(g[0][i], g[1][i], 1e-5);
}

}  // namespace
}  // namespace fathom::train
