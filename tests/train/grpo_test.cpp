// GRPO: the per-token objective against a plain double-precision formula and its central
// differences, the whole model's gradient under that objective against differences of the
// loss through forward passes, the first update's unit ratio, the KL-only gradient at zero
// advantage, group advantages by hand, and run_grpo learning a one-token task end to end.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>

#include "core/error.h"
#include "core/random.h"
#include "tokenizer/bpe_train.h"
#include "train/checkpoint.h"
#include "train/grpo.h"
#include "train/grpo_loss.h"
#include "train/model.h"

namespace fathom::train {
namespace {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------
// The objective written plainly, in double.

struct NaiveOpts {
  double eps_low = 0.2, eps_high = 0.2, beta = 0;
  LossNorm norm = LossNorm::SeqMean;
  int64_t N = 1, step_tokens = 1, max_len = 1;
};

// The weight of one completion's tokens under each normalization (grpo_loss.h's table).
double naive_weight(const NaiveOpts& o, int64_t tokens) {
  switch (o.norm) {
    case LossNorm::SeqMean: return 1.0 / double(o.N) / double(tokens);
    case LossNorm::TokenMean: return 1.0 / double(o.step_tokens);
    case LossNorm::TokenSum: return 1.0 / double(o.N) / double(o.max_len);
  }
  return 0;
}

struct NaiveResult {
  double loss = 0, kl = 0, ratio = 0;
  int64_t clipped = 0, tokens = 0;
};

// L = Σ_i Σ_t w_i (β k - min(r A, clip(r) A)), over rows whose target is set.
NaiveResult naive(const std::vector<double>& logp, const std::vector<int32_t>& targets, const std::vector<float>& old,
                  const std::vector<float>& ref, const std::vector<GrpoSeq>& seqs, int64_t T, const NaiveOpts& o) {
  NaiveResult res;
  for (const GrpoSeq& q : seqs) {
    const double w = naive_weight(o, q.tokens);
    for (int64_t t = 0; t < T; ++t) {
      const size_t i = size_t(q.b * T + t);
      if (targets[i] < 0) continue;
      const double r = std::exp(logp[i] - double(old[i]));
      const double plain = r * q.advantage;
      const double cut = std::min(std::max(r, 1 - o.eps_low), 1 + o.eps_high) * q.advantage;
      const double s = std::min(plain, cut);
      const double x = double(ref[i]) - logp[i];
      const double k = std::exp(x) - x - 1;
      res.loss += w * (o.beta * k - s);
      res.kl += k;
      res.ratio += r;
      res.clipped += cut < plain;
      ++res.tokens;
    }
  }
  return res;
}

GrpoLossOpts loss_opts(const NaiveOpts& o) {
  GrpoLossOpts l;
  l.clip_low = o.eps_low;
  l.clip_high = o.eps_high;
  l.beta = o.beta;
  l.norm = o.norm;
  l.max_len = o.max_len;
  return l;
}

GrpoPass make_pass(int64_t T, const std::vector<GrpoSeq>& seqs, const std::vector<float>& old,
                   const std::vector<float>& ref, const NaiveOpts& o) {
  GrpoPass p;
  p.T = T;
  p.seqs = &seqs;
  p.old_logp = old.data();
  p.ref_logp = ref.data();
  p.step_seqs = o.N;
  p.step_tokens = o.step_tokens;
  return p;
}

// Hand-made rows: three completions of 4, 3 and 2 tokens after prompts, T = 7, with
// ratios chosen on every side of the clip band (ε_low 0.2, ε_high 0.28) and both signs of A.
struct HandRows {
  static constexpr int64_t T = 7;
  std::vector<GrpoSeq> seqs;
  std::vector<int32_t> targets;
  std::vector<float> logp, entropy, old, ref;
};

HandRows hand_rows() {
  HandRows h;
  const int64_t T = HandRows::T;
  h.targets.assign(size_t(3 * T), -1);
  h.logp.assign(size_t(3 * T), 0.f);
  h.entropy.assign(size_t(3 * T), 0.f);
  // Untargeted rows carry old/ref log-probabilities far from 0: counted, they would show.
  h.old.assign(size_t(3 * T), -2.5f);
  h.ref.assign(size_t(3 * T), 1.5f);
  struct Tok {
    int64_t row;
    double r;  // the ratio exp(logp - old)
  };
  // A = +1.5: inside, above 1+ε_high (clipped), below 1-ε_low (not clipped: A > 0), and
  // 1.25, between 1+ε_low and 1+ε_high (clipped only without clip-higher).
  // A = -0.8: below 1-ε_low (clipped), above 1+ε_high (not clipped: A < 0), inside.
  // A = +0.3: a two-token completion, then padding.
  const std::vector<std::vector<Tok>> toks = {{{2, 1.0}, {3, 1.5}, {4, 0.5}, {5, 1.25}},
                                              {{0 + T, 0.5}, {1 + T, 1.5}, {2 + T, 0.9}},
                                              {{4 + 2 * T, 1.1}, {5 + 2 * T, 0.7}}};
  const double adv[] = {1.5, -0.8, 0.3};
  for (size_t b = 0; b < toks.size(); ++b) {
    h.seqs.push_back(GrpoSeq{int64_t(b), adv[b], int64_t(toks[b].size())});
    for (size_t k = 0; k < toks[b].size(); ++k) {
      const size_t i = size_t(toks[b][k].row);
      h.targets[i] = int32_t(10 + i);
      h.logp[i] = -0.3f - 0.4f * float(k) - 0.2f * float(b);
      h.entropy[i] = 1.0f + 0.1f * float(i);
      h.old[i] = float(double(h.logp[i]) - std::log(toks[b][k].r));
      h.ref[i] = h.logp[i] + 0.25f * float(k % 3) - 0.3f * float(b == 1);
    }
  }
  return h;
}

std::vector<double> widen(const std::vector<float>& v) { return {v.begin(), v.end()}; }

class GrpoTokenLoss : public ::testing::TestWithParam<LossNorm> {};

TEST_P(GrpoTokenLoss, MatchesNaiveFormula) {
  const HandRows h = hand_rows();
  for (const double beta : {0.0, 0.04, 0.5})
    for (const double eps_high : {0.2, 0.28}) {
      NaiveOpts o;
      o.eps_low = 0.2;
      o.eps_high = eps_high;
      o.beta = beta;
      o.norm = GetParam();
      o.N = 5;             // the step holds more completions than this pass
      o.step_tokens = 17;
      o.max_len = 8;
      std::vector<float> dlogp(h.logp.size(), 0.f);
      const TokenTerms t{int64_t(h.logp.size()), h.targets.data(), h.logp.data(), h.entropy.data(), dlogp.data()};
      const GrpoSums s = grpo_token_loss(t, make_pass(HandRows::T, h.seqs, h.old, h.ref, o), loss_opts(o));
      const NaiveResult n = naive(widen(h.logp), h.targets, h.old, h.ref, h.seqs, HandRows::T, o);
      const std::string what = "beta " + std::to_string(beta) + " eps_high " + std::to_string(eps_high);
      EXPECT_NEAR(s.loss, n.loss, 1e-12 * (1 + std::abs(n.loss))) << what;
      // β = 0 reads no reference (GrpoPass::ref_logp may be null) and reports no KL.
      EXPECT_NEAR(s.kl, beta != 0 ? n.kl : 0.0, 1e-12 * (1 + n.kl)) << what;
      EXPECT_NEAR(s.ratio, n.ratio, 1e-12 * n.ratio) << what;
      EXPECT_EQ(s.tokens, 9) << what;
      EXPECT_EQ(s.tokens, n.tokens) << what;
      // Clipped: 1.5 (A>0), 0.5 (A<0), and 1.25 (A>0) only when ε_high = ε_low.
      EXPECT_EQ(s.clipped, eps_high == 0.2 ? 3 : 2) << what;
      EXPECT_EQ(s.clipped, n.clipped) << what;
      double ent = 0;
      for (size_t i = 0; i < h.targets.size(); ++i)
        if (h.targets[i] >= 0) ent += h.entropy[i];
      EXPECT_NEAR(s.entropy, ent, 1e-9) << what;
      for (size_t i = 0; i < h.targets.size(); ++i)
        if (h.targets[i] < 0) {
          EXPECT_EQ(dlogp[i], 0.f) << what << ": untargeted row " << i;
        }
      if (beta == 0) {
        GrpoPass p = make_pass(HandRows::T, h.seqs, h.old, h.ref, o);
        p.ref_logp = nullptr;
        std::vector<float> d2(h.logp.size(), 0.f);
        const TokenTerms t2{int64_t(h.logp.size()), h.targets.data(), h.logp.data(), h.entropy.data(), d2.data()};
        EXPECT_EQ(grpo_token_loss(t2, p, loss_opts(o)).loss, s.loss) << what;
        EXPECT_EQ(d2, dlogp) << what;
      }
    }
}

// dL/dlogp against central differences of the naive loss, row by row. Every ratio sits at
// least 0.03 from a clip bound, so a step of 1e-6 in logp never crosses a kink.
TEST_P(GrpoTokenLoss, GradientMatchesCentralDifferences) {
  const HandRows h = hand_rows();
  for (const double eps_high : {0.2, 0.28}) {
    NaiveOpts o;
    o.eps_high = eps_high;
    o.beta = 0.3;
    o.norm = GetParam();
    o.N = 4;
    o.step_tokens = 12;
    o.max_len = 6;
    std::vector<float> dlogp(h.logp.size(), 0.f);
    const TokenTerms t{int64_t(h.logp.size()), h.targets.data(), h.logp.data(), h.entropy.data(), dlogp.data()};
    grpo_token_loss(t, make_pass(HandRows::T, h.seqs, h.old, h.ref, o), loss_opts(o));
    std::vector<double> lp = widen(h.logp);
    const double eps = 1e-6;
    double gmax = 0;
    for (float g : dlogp) gmax = std::max(gmax, double(std::abs(g)));
    ASSERT_GT(gmax, 0.01);
    for (size_t i = 0; i < lp.size(); ++i) {
      const double x = lp[i];
      lp[i] = x + eps;
      const double up = naive(lp, h.targets, h.old, h.ref, h.seqs, HandRows::T, o).loss;
      lp[i] = x - eps;
      const double dn = naive(lp, h.targets, h.old, h.ref, h.seqs, HandRows::T, o).loss;
      lp[i] = x;
      const double fd = (up - dn) / (2 * eps);
      // fp32 dlogp: ~6e-8 relative; the difference quotient: ~1e-10 absolute.
      EXPECT_NEAR(double(dlogp[i]), fd, 1e-6 * std::abs(fd) + 1e-9) << "row " << i << " eps_high " << eps_high;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(GrpoNorms, GrpoTokenLoss,
                         ::testing::Values(LossNorm::SeqMean, LossNorm::TokenMean, LossNorm::TokenSum),
                         [](const auto& info) {
                           return std::string(info.param == LossNorm::SeqMean     ? "SeqMean"
                                              : info.param == LossNorm::TokenMean ? "TokenMean"
                                                                                  : "TokenSum");
                         });

// ---------------------------------------------------------------------------------------
// Through a tiny DeepSeek-V3 (MLA, DeepSeekMoE with a shared expert, noaux_tc routing).

nlohmann::json tiny_v3(int64_t vocab) {
  return {{"model_type", "deepseek_v3"}, {"vocab_size", vocab}, {"hidden_size", 16}, {"intermediate_size", 24},
          {"moe_intermediate_size", 8}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
          {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"q_lora_rank", 12}, {"kv_lora_rank", 8},
          {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4}, {"v_head_dim", 8}, {"n_routed_experts", 8},
          {"n_shared_experts", 1}, {"num_experts_per_tok", 2}, {"n_group", 2}, {"topk_group", 1},
          {"topk_method", "noaux_tc"}, {"scoring_func", "sigmoid"}, {"norm_topk_prob", true},
          {"routed_scaling_factor", 2.5}, {"first_k_dense_replace", 1}, {"num_nextn_predict_layers", 0},
          {"initializer_range", 0.2}, {"bos_token_id", 0}, {"eos_token_id", 1}};
}

// Three completions after prompts of 3, 4 and 2 tokens: completions of 4, 2 and 5 tokens,
// then padding. Batch::target marks the completion tokens (the rows before them predict them).
struct ModelCase {
  std::unique_ptr<TrainModel> m;
  Batch b;
  std::vector<GrpoSeq> seqs;
  std::vector<float> cur, old, ref;  // [B*T] the current, old and reference log-probabilities
  std::vector<int32_t> targets;      // [B*T] as the model reports them
};

ModelCase model_case(const std::vector<double>& adv, float temperature = 1.0f) {
  ModelCase c;
  c.m = TrainModel::init(tiny_v3(40), 23);
  // Router biases that dwarf the sigmoid scores pin every token to experts 1 and 2, so that
  // central differences never flip a selection (the gates still depend on the scores).
  for (const auto& ml : c.m->moe_layers())
    if (ml.bias)
      for (size_t e = 0; e < ml.bias->w.size(); ++e) ml.bias->w[e] = (e == 1 || e == 2) ? 10.0f : 0.0f;
  const int64_t prompt[] = {3, 4, 2}, comp[] = {4, 2, 5};
  c.b.B = 3;
  c.b.T = 8;
  for (int64_t i = 0; i < c.b.B * c.b.T; ++i) c.b.ids.push_back(int32_t(splitmix64(uint64_t(i) + 5) % 40));
  c.b.target.assign(c.b.ids.size(), 0);
  for (int64_t s = 0; s < 3; ++s) {
    for (int64_t t = prompt[s]; t < prompt[s] + comp[s]; ++t) c.b.target[size_t(s * c.b.T + t)] = 1;
    c.seqs.push_back(GrpoSeq{s, adv[size_t(s)], comp[s]});
  }
  Objective peek;
  peek.token_temperature = temperature;
  peek.token_loss = [&](const TokenTerms& t) {
    c.cur.assign(t.logp, t.logp + t.rows);
    c.targets.assign(t.targets, t.targets + t.rows);
  };
  c.m->step(c.b, peek, LossScale{}, false, nullptr);
  // Old and reference log-probabilities near the current ones: ratios within [0.93, 1.08],
  // well inside the clip band, so no difference below crosses a kink.
  c.old.resize(c.cur.size());
  c.ref.resize(c.cur.size());
  for (size_t i = 0; i < c.cur.size(); ++i) {
    c.old[i] = c.cur[i] + 0.07f * float(2.0 * double(splitmix64(i + 77) >> 11) * 0x1.0p-53 - 1.0);
    c.ref[i] = c.cur[i] + 0.4f * float(2.0 * double(splitmix64(i + 991) >> 11) * 0x1.0p-53 - 1.0);
  }
  return c;
}

TEST(GrpoModel, TargetsAreTheCompletionTokens) {
  const ModelCase c = model_case({1.0, -0.5, 0.25});
  int64_t n = 0;
  for (int64_t s = 0; s < 3; ++s)
    for (int64_t t = 0; t < c.b.T; ++t) {
      const size_t i = size_t(s * c.b.T + t);
      const bool want = t + 1 < c.b.T && c.b.target[i + 1];
      EXPECT_EQ(c.targets[i], want ? c.b.ids[i + 1] : -1) << "row " << i;
      n += want;
    }
  EXPECT_EQ(n, 11);
}

// dL/dw from step(backward) with grpo_token_loss, against central differences of the naive
// loss evaluated on forward-only passes; at a sampling temperature ≠ 1 the log-probabilities
// are those of logits / T, and the backward pass carries the 1/T.
void check_gradient_by_central_differences(float temperature) {
  ModelCase c = model_case({1.3, -0.7, 0.4}, temperature);
  NaiveOpts o;
  o.eps_low = 0.2;
  o.eps_high = 0.28;
  o.beta = 0.1;
  o.norm = LossNorm::SeqMean;
  o.N = 3;
  o.step_tokens = 11;
  const GrpoPass pass = make_pass(c.b.T, c.seqs, c.old, c.ref, o);
  Objective obj;
  obj.token_temperature = temperature;
  GrpoSums sums;
  obj.token_loss = [&](const TokenTerms& t) { sums = grpo_token_loss(t, pass, loss_opts(o)); };
  c.m->zero_grad();
  c.m->step(c.b, obj, LossScale{}, true, nullptr);
  ASSERT_EQ(sums.tokens, 11);
  ASSERT_EQ(sums.clipped, 0);
  const double r_mean = sums.ratio / 11;
  ASSERT_GT(r_mean, 0.93);
  ASSERT_LT(r_mean, 1.08);

  Objective fwd;
  fwd.token_temperature = temperature;
  double loss = 0;
  fwd.token_loss = [&](const TokenTerms& t) {
    loss = naive(widen(std::vector<float>(t.logp, t.logp + t.rows)), c.targets, c.old, c.ref, c.seqs, c.b.T, o).loss;
  };
  auto L = [&] {
    c.m->step(c.b, fwd, LossScale{}, false, nullptr);
    return loss;
  };
  EXPECT_NEAR(L(), sums.loss, 1e-6 * std::abs(sums.loss) + 1e-9);

  const char* names[] = {"model.embed_tokens.weight",
                         "lm_head.weight",
                         "model.norm.weight",
                         "model.layers.0.input_layernorm.weight",
                         "model.layers.0.self_attn.q_a_proj.weight",
                         "model.layers.0.self_attn.q_b_proj.weight",
                         "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
                         "model.layers.0.self_attn.kv_a_layernorm.weight",
                         "model.layers.0.self_attn.kv_b_proj.weight",
                         "model.layers.0.self_attn.o_proj.weight",
                         "model.layers.0.mlp.up_proj.weight",
                         "model.layers.1.self_attn.q_a_layernorm.weight",
                         "model.layers.1.mlp.gate.weight",
                         "model.layers.1.mlp.experts.1.gate_proj.weight",
                         "model.layers.1.mlp.experts.2.down_proj.weight",
                         "model.layers.1.mlp.shared_experts.up_proj.weight",
                         "model.layers.1.post_attention_layernorm.weight"};
  for (const char* name : names) {
    Param* p = c.m->find(name);
    ASSERT_NE(p, nullptr) << name;
    const size_t n = p->w.size();
    double rms = 0, gmax = 0;
    for (size_t j = 0; j < n; ++j) {
      rms += double(p->w[j]) * p->w[j];
      gmax = std::max(gmax, double(std::abs(p->g[j])));
    }
    rms = std::sqrt(rms / double(n));
    ASSERT_GT(gmax, 0.0) << name << ": no gradient";
    // The 4 entries of largest gradient (the embedding's live rows) and 4 at random.
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), size_t(0));
    std::partial_sort(order.begin(), order.begin() + 4, order.end(),
                      [&](size_t a, size_t b) { return std::abs(p->g[a]) > std::abs(p->g[b]); });
    std::vector<size_t> pick(order.begin(), order.begin() + 4);
    for (uint64_t k = 0; k < 4; ++k) pick.push_back(size_t(splitmix64(k * 131 + n) % n));
    // h = 1e-3: relative 1e-3 for the norms (weights 1), 5e-3 for the matrices (scale 0.2).
    // The loss's fp32 rounding (~1e-7 of it, |L| < 1) makes ~1e-7/h = 1e-4 of noise in the
    // quotient; h = 2e-4 would bring it to 5e-4, above many entries' gradient, while the
    // O(h²) truncation stays below 1e-5 here.
    const float h = 1e-3f;
    for (size_t j : pick) {
      const float w0 = p->w[j];
      p->w[j] = w0 + h;
      const double up = L();
      p->w[j] = w0 - h;
      const double dn = L();
      p->w[j] = w0;
      const double fd = (up - dn) / (double(w0 + h) - double(w0 - h));  // the steps fp32 took
      const double an = p->g[j];
      // 1% of the value plus the larger of that noise and 1e-3 of the tensor's largest
      // entry. The 4 largest entries (0.04 to 0.8 here) sit far above it: a flipped sign, a
      // missing weight or a dropped term moves them by O(1) of themselves.
      EXPECT_NEAR(an, fd, 1e-2 * std::abs(fd) + std::max(1e-4, 1e-3 * gmax)) << name << "[" << j << "]";
    }
  }
}

TEST(GrpoModel, GradientMatchesCentralDifferences) { check_gradient_by_central_differences(1.0f); }
TEST(GrpoModel, GradientMatchesCentralDifferencesAtATemperature) { check_gradient_by_central_differences(0.7f); }

// The tempered log-probabilities against log softmax(z / T) of the plain ones: V sequences
// that differ only in the token after position p share the logits z at p (attention is
// causal), so their T = 1 log-probabilities there give z up to a constant, for every token.
TEST(GrpoModel, TemperatureGivesTheLogProbabilitiesOfTheTemperedSoftmax) {
  const int64_t V = 40, T = 6, p = 3;
  auto m = TrainModel::init(tiny_v3(V), 31);
  Batch b;
  b.B = V;
  b.T = T;
  for (int64_t v = 0; v < V; ++v)
    for (int64_t t = 0; t < T; ++t) {
      b.ids.push_back(t == p + 1 ? int32_t(v) : int32_t(splitmix64(uint64_t(t) + 9) % uint64_t(V)));
      b.target.push_back(t == p + 1);
    }
  auto logp_at = [&](float temp) {
    std::vector<double> out(static_cast<size_t>(V));  // [V] log p(v) at position p
    Objective obj;
    obj.token_temperature = temp;
    obj.token_loss = [&](const TokenTerms& tt) {
      for (int64_t v = 0; v < V; ++v) out[size_t(v)] = tt.logp[size_t(v * T + p)];
    };
    m->step(b, obj, LossScale{}, false, nullptr);
    return out;
  };
  const std::vector<double> z = logp_at(1.0f);
  double mx = -1e300;
  for (double x : z) mx = std::max(mx, x);
  for (const float temp : {0.5f, 0.7f, 1.6f}) {
    const std::vector<double> got = logp_at(temp);
    double lse = 0;
    for (double x : z) lse += std::exp((x - mx) / temp);
    lse = mx / temp + std::log(lse);
    double spread = 0;
    for (int64_t v = 0; v < V; ++v) {
      EXPECT_NEAR(got[size_t(v)], z[size_t(v)] / temp - lse, 2e-5) << "T " << temp << " token " << v;
      spread = std::max(spread, std::abs(got[size_t(v)] - z[size_t(v)]));
    }
    EXPECT_GT(spread, 0.05) << "T " << temp << " must change the distribution";
  }
}

// On the first update the old log-probabilities are the pass's own: every ratio is exactly
// 1, nothing clips, and with β = 0 the gradient is the plain policy gradient, dlogp = -w A.
TEST(GrpoModel, FirstUpdateRatioIsExactlyOne) {
  for (const LossNorm norm : {LossNorm::SeqMean, LossNorm::TokenMean, LossNorm::TokenSum}) {
    ModelCase c = model_case({1.3, -0.7, 0.4});
    NaiveOpts o;
    o.norm = norm;
    o.N = 6;
    o.step_tokens = 20;
    o.max_len = 7;
    std::vector<float> old(c.cur.size(), 0.f);
    const GrpoPass pass = make_pass(c.b.T, c.seqs, old, c.ref, o);
    GrpoSums s;
    std::vector<float> dlogp;
    Objective obj;
    obj.token_loss = [&](const TokenTerms& t) {
      std::copy(t.logp, t.logp + t.rows, old.begin());
      s = grpo_token_loss(t, pass, loss_opts(o));
      dlogp.assign(t.dlogp, t.dlogp + t.rows);
    };
    c.m->zero_grad();
    c.m->step(c.b, obj, LossScale{}, true, nullptr);
    EXPECT_EQ(s.tokens, 11);
    EXPECT_EQ(s.ratio, double(s.tokens));
    EXPECT_EQ(s.clipped, 0);
    double want_loss = 0;
    for (const GrpoSeq& q : c.seqs)
      for (int64_t t = 0; t < c.b.T; ++t) {
        const size_t i = size_t(q.b * c.b.T + t);
        if (c.targets[i] < 0) {
          EXPECT_EQ(dlogp[i], 0.f);
          continue;
        }
        const double w = naive_weight(o, q.tokens);
        EXPECT_EQ(dlogp[i], float(-(w * q.advantage))) << "row " << i;
        want_loss -= w * q.advantage;
      }
    EXPECT_NEAR(s.loss, want_loss, 1e-12);
  }
}

// A = 0 everywhere leaves only the KL's pull toward the reference: the parameters' gradient
// is that of a hook with dlogp = w β (1 - exp(ref - logp)); with β = 0 too, nothing moves.
TEST(GrpoModel, ZeroAdvantageLeavesOnlyTheKlGradient) {
  ModelCase c = model_case({0.0, 0.0, 0.0});
  NaiveOpts o;
  o.beta = 0.2;
  o.N = 3;
  const GrpoPass pass = make_pass(c.b.T, c.seqs, c.old, c.ref, o);
  Objective grpo, kl;
  grpo.token_loss = [&](const TokenTerms& t) { grpo_token_loss(t, pass, loss_opts(o)); };
  kl.token_loss = [&](const TokenTerms& t) {
    for (const GrpoSeq& q : c.seqs)
      for (int64_t k = q.b * c.b.T; k < (q.b + 1) * c.b.T; ++k)
        if (t.targets[k] >= 0) {
          const double w = naive_weight(o, q.tokens);
          t.dlogp[k] = float(w * o.beta * (1.0 - std::exp(double(c.ref[size_t(k)]) - double(t.logp[k]))));
        }
  };
  auto grads = [&](const Objective& obj) {
    c.m->zero_grad();
    c.m->step(c.b, obj, LossScale{}, true, nullptr);
    std::vector<std::vector<float>> g;
    for (Param* p : c.m->trainable()) g.push_back(p->g);
    return g;
  };
  const auto g_grpo = grads(grpo), g_kl = grads(kl);
  const std::vector<Param*> ps = c.m->trainable();
  for (size_t k = 0; k < ps.size(); ++k) {
    double gmax = 0;
    for (float v : g_kl[k]) gmax = std::max(gmax, double(std::abs(v)));
    // The KL alone moves the head and the attention (routed experts other than 1 and 2 see no token).
    if (ps[k]->name == "lm_head.weight" || ps[k]->name.find("self_attn") != std::string::npos) {
      EXPECT_GT(gmax, 0.0) << ps[k]->name;
    }
    for (size_t j = 0; j < g_kl[k].size(); ++j)
      ASSERT_NEAR(g_grpo[k][j], g_kl[k][j], 1e-5 * gmax + 1e-12) << ps[k]->name << "[" << j << "]";
  }
  o.beta = 0;
  const GrpoPass pass0 = make_pass(c.b.T, c.seqs, c.old, c.ref, o);
  grpo.token_loss = [&](const TokenTerms& t) { grpo_token_loss(t, pass0, loss_opts(o)); };
  const auto g0 = grads(grpo);
  for (size_t k = 0; k < ps.size(); ++k)
    for (size_t j = 0; j < g0[k].size(); ++j) ASSERT_EQ(g0[k][j], 0.f) << ps[k]->name << "[" << j << "]";
}

// ---------------------------------------------------------------------------------------
// Group advantages, computed by hand.

TEST(GrpoAdvantages, HandComputed) {
  // {2, 4, 4, 4, 5, 5, 7, 9}: mean 5, population variance 32/8 = 4, std 2.
  const std::vector<double> r = {2, 4, 4, 4, 5, 5, 7, 9};
  const std::vector<double> a = group_advantages(r, true);
  const double want[] = {-3 / 2.0001, -1 / 2.0001, -1 / 2.0001, -1 / 2.0001, 0, 0, 2 / 2.0001, 4 / 2.0001};
  ASSERT_EQ(a.size(), r.size());
  for (size_t i = 0; i < r.size(); ++i) EXPECT_NEAR(a[i], want[i], 1e-12) << i;
  EXPECT_NEAR(a[0], -1.4999250037498125, 1e-12);
  // {0, 1, 1, 0}: mean 0.5, std 0.5.
  const std::vector<double> b = group_advantages({0, 1, 1, 0}, true);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(b[i], (i == 1 || i == 2 ? 0.5 : -0.5) / 0.5001, 1e-12);
  EXPECT_NEAR(b[1], 0.99980003999200159, 1e-12);
  // Dr. GRPO: no division.
  const std::vector<double> d = group_advantages(r, false);
  const double want_d[] = {-3, -1, -1, -1, 0, 0, 2, 4};
  for (size_t i = 0; i < r.size(); ++i) EXPECT_NEAR(d[i], want_d[i], 1e-12) << i;
  // One success in a group of 4 (mean 0.25, std √0.1875).
  const std::vector<double> e = group_advantages({0, 0, 1, 0}, true);
  EXPECT_NEAR(e[2], 0.75 / (std::sqrt(0.1875) + 1e-4), 1e-12);
  EXPECT_NEAR(e[0], -0.25 / (std::sqrt(0.1875) + 1e-4), 1e-12);
}

TEST(GrpoAdvantages, EqualRewardsGiveZero) {
  for (const bool scale : {true, false}) {
    for (double v : group_advantages({0.7, 0.7, 0.7, 0.7, 0.7}, scale)) EXPECT_EQ(v, 0.0);
    for (double v : group_advantages({0, 0, 0}, scale)) EXPECT_EQ(v, 0.0);
    for (double v : group_advantages({1}, scale)) EXPECT_EQ(v, 0.0);
  }
}

// ---------------------------------------------------------------------------------------
// run_grpo end to end: a fresh tiny DeepSeek-V3 learns to answer "7".

// A model directory in a scratch folder, made once per process and removed at exit: a BPE
// tokenizer trained on a few digit-free sentences (the digits stay single byte tokens), a
// DeepSeek-V3 config of the tokenizer's vocabulary, fresh weights and a prompts file.
struct ToyModel {
  fs::path dir = fs::temp_directory_path() / ("fathom-grpo-" + std::to_string(getpid()));
  fs::path model = dir / "model", prompts = dir / "prompts.jsonl";
  int32_t vocab = 0;

  ToyModel() {
    fs::create_directories(dir);
    BpeTrainOpts bo;
    for (int i = 0; i < 4; ++i)
      for (const char* t : {"Say a digit", "Give me a digit", "Name one digit", "Pick a digit please"})
        bo.texts.push_back(t);
    bo.vocab_size = 270;
    const TrainedBpe bpe = train_bpe(bo);
    vocab = bpe.vocab_size();
    bpe.save((dir / "tok").string());
    const nlohmann::json cfg = {
        {"model_type", "deepseek_v3"}, {"vocab_size", vocab}, {"hidden_size", 32}, {"intermediate_size", 64},
        {"moe_intermediate_size", 16}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
        {"num_key_value_heads", 2}, {"max_position_embeddings", 128}, {"q_lora_rank", 24}, {"kv_lora_rank", 16},
        {"qk_nope_head_dim", 16}, {"qk_rope_head_dim", 8}, {"v_head_dim", 16}, {"n_routed_experts", 4},
        {"n_shared_experts", 1}, {"num_experts_per_tok", 2}, {"n_group", 1}, {"topk_group", 1},
        {"topk_method", "noaux_tc"}, {"scoring_func", "sigmoid"}, {"norm_topk_prob", true},
        {"routed_scaling_factor", 2.5}, {"first_k_dense_replace", 1}, {"num_nextn_predict_layers", 0},
        {"rms_norm_eps", 1e-6}, {"rope_theta", 10000}, {"initializer_range", 0.02}, {"bos_token_id", 0},
        {"eos_token_id", 1}, {"tie_word_embeddings", false}};
    const auto m = TrainModel::init(cfg, 5);
    SaveOpts so;
    so.dir = model.string();
    so.config = m->config_json();
    so.params = m->params();
    so.dtype = DType::F32;
    so.tokenizer_dir = (dir / "tok").string();
    so.lookup = [&](const WeightSpec& s) -> const float* {
      const Param* p = m->source_of(s);
      return p ? p->w.data() : nullptr;
    };
    save_model(so);
    std::ofstream(prompts) << "{\"prompt\": \"Say a digit\"}\n{\"prompt\": \"Give me a digit\"}\n"
                              "{\"prompt\": \"Name one digit\", \"id\": 3}\n{\"prompt\": \"Pick a digit please\"}\n";
  }
  ~ToyModel() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
const ToyModel& toy() {
  static const ToyModel t;
  return t;
}

// The reward: 1 when the completion is exactly "7", else 0. The program sees one JSON object
// per completion with its keys sorted, so "completion":"7" with its closing quote is exactly
// that (a one-token completion "77" or "7x" fails the pattern).
constexpr const char* kSevenReward = R"(awk '{ if ($0 ~ /"completion":"7"/) print 1; else print 0 }')";

GrpoOpts toy_opts(const std::string& log) {
  GrpoOpts o;
  o.model = toy().model.string();
  o.tokenizer = (toy().dir / "tok").string();
  o.prompts = toy().prompts.string();
  o.seed = 3;
  o.prompts_per_step = 4;
  o.group = 16;
  o.max_new_tokens = 1;
  o.temperature = 1.0f;
  o.reward_cmd.command = kSevenReward;
  o.steps = 40;
  o.micro_batch = 64;
  o.adam.lr = 0.03;
  o.loss.beta = 0;
  o.log = log;
  o.json = false;
  o.threads = 2;
  return o;
}

std::vector<double> logged_rewards(const std::string& log) {
  std::vector<double> r;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("reward")) r.push_back(j["reward"].get<double>());
  }
  return r;
}

double mean_of(const std::vector<double>& v, size_t from, size_t to) {
  double s = 0;
  for (size_t i = from; i < to; ++i) s += v[i];
  return s / double(to - from);
}

void expect_learns(const GrpoOpts& o, const std::string& what) {
  const auto t0 = std::chrono::steady_clock::now();
  run_grpo(o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<double> r = logged_rewards(o.log);
  ASSERT_EQ(r.size(), size_t(o.steps)) << what;
  std::string trace;
  for (double v : r) trace += std::to_string(v).substr(0, 5) + " ";
  // "7" is one of ~270 nearly equally likely tokens at the start (0.4%), and is said every
  // time (up to a rare sample) by the end: with these seeds about 20 steps in; 40 leave room
  // for other instruction sets' rounding to take a different path.
  EXPECT_LE(mean_of(r, 0, 3), 0.05) << what << ": " << trace;
  EXPECT_GE(mean_of(r, r.size() - 5, r.size()), 0.9) << what << ": " << trace;
  std::cout << what << ": rewards " << trace << "(" << secs << " s)\n";
}

TEST(GrpoRun, LearnsToSaySeven) {
  const GrpoOpts o = toy_opts((toy().dir / "run.jsonl").string());
  expect_learns(o, "GRPO");
  EXPECT_TRUE(fs::exists(toy().dir / "run.svg"));
}

TEST(GrpoRun, LearnsToSaySevenWithDrGrpoAndDropEqual) {
  GrpoOpts o = toy_opts((toy().dir / "dr.jsonl").string());
  o.scale_std = false;
  o.loss.norm = LossNorm::TokenSum;
  o.drop_equal = true;
  o.seed = 4;
  expect_learns(o, "Dr. GRPO, drop-equal");
}

std::string grpo_error(const std::string& prompts_text, bool reward_cmd) {
  const fs::path p = toy().dir / "bad.jsonl";
  std::ofstream(p) << prompts_text;
  GrpoOpts o = toy_opts("");
  o.prompts = p.string();
  o.steps = 1;
  if (!reward_cmd) o.reward_cmd.command.clear();
  try {
    run_grpo(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(GrpoRun, PromptsLineWithoutPromptIsAnError) {
  const std::string e = grpo_error("{\"prompt\": \"Say a digit\"}\n{\"question\": \"Say a digit\"}\n", true);
  EXPECT_NE(e.find("bad.jsonl:2"), std::string::npos) << e;
  EXPECT_NE(e.find("\"prompt\""), std::string::npos) << e;
}

TEST(GrpoRun, BuiltInRewardNeedsAnIntegerAnswer) {
  const std::string e = grpo_error("{\"prompt\": \"Say seven\", \"answer\": \"seven\"}\n", false);
  EXPECT_NE(e.find("bad.jsonl:1"), std::string::npos) << e;
  EXPECT_NE(e.find("integer"), std::string::npos) << e;
  // The same file is fine with an outside reward program, which reads answers as it likes.
  EXPECT_EQ(grpo_error("{\"prompt\": \"Say seven\", \"answer\": \"seven\"}\n", true), "");
}

TEST(GrpoPrompts, ReadsPromptsAnswersAndOtherKeys) {
  const fs::path p = toy().dir / "prompts.jsonl";
  std::ofstream(p) << "{\"prompt\": \"a\", \"answer\": \"-12\", \"level\": 3}\r\n\n  \n"
                   << "{\"prompt\": \"b\", \"answer\": 7, \"tests\": [\"x\"]}\n{\"prompt\": \"c\"}\n";
  const std::vector<PromptItem> items = read_prompts(p.string(), false);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].prompt, "a");
  EXPECT_EQ(items[0].answer, "-12");
  EXPECT_EQ(items[0].value, std::optional<int64_t>(-12));
  EXPECT_EQ(items[0].extra, (nlohmann::json{{"level", 3}}));
  EXPECT_EQ(items[1].answer, "7");  // a number's JSON text
  EXPECT_EQ(items[1].value, std::optional<int64_t>(7));
  EXPECT_EQ(items[1].extra, (nlohmann::json{{"tests", {"x"}}}));
  EXPECT_EQ(items[2].answer, "");
  EXPECT_FALSE(items[2].value.has_value());
  // With the built-in accuracy reward, "c" has no integer answer.
  try {
    read_prompts(p.string(), true);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("prompts.jsonl:5"), std::string::npos) << e.what();
  }
  std::ofstream(p) << "{\"prompt\": \"a\"}\n{\"prompt\": \"b\"\n";
  try {
    read_prompts(p.string(), false);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("prompts.jsonl:2: not valid JSON"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace fathom::train
