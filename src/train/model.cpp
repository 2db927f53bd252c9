// TrainModel's forward and backward: embed → decoder layers → norm → head → CE, the MTP
// modules on top of the final hidden state, and the MoE layers' balance terms. The
// backward runs the MTP modules first (their gradient reaches the main model through the
// final hidden state), then the main head, the layers in reverse and the embedding.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "train/blas.h"
#include "train/model.h"
#include "train/ops.h"

namespace fathom::train {

struct TrainModel::Layer {
  int64_t index = 0;
  Param *attn_norm = nullptr, *ffn_norm = nullptr;
  std::unique_ptr<TrainMla> mla;
  std::unique_ptr<TrainGqa> gqa;
  std::unique_ptr<TrainMlp> mlp;
  std::unique_ptr<TrainMoe> moe;
  int64_t moe_slot = -1;  // index in moe_layers()

  // What the forward keeps (named, so a test or a dump can read any of them).
  std::vector<float> x;       // [rows, D] the layer's input (residual stream)
  std::vector<float> n1, r1;  // [rows, D] attention input after its norm, [rows] rstd
  MlaSaved mla_s;
  GqaSaved gqa_s;
  std::vector<float> h;       // [rows, D] x + attention
  std::vector<float> n2, r2;  // [rows, D] FFN input after its norm, [rows] rstd
  MlpSaved mlp_s;
  MoeSaved moe_s;
};

struct TrainModel::Mtp {
  Param *enorm = nullptr, *hnorm = nullptr, *eh_proj = nullptr, *head_norm = nullptr;
  std::unique_ptr<Layer> layer;
  std::vector<float> e, h_in;     // [rows_k, D] embedding of t_{i+k}, previous depth's hidden
  std::vector<float> en, er, hn, hr;  // normed halves, their rstd
  std::vector<float> cat;         // [rows_k, 2D] [enorm(e) | hnorm(h)]
  std::vector<float> y;           // [rows_k, D] the block's output (h^k)
  std::vector<float> o, orr;      // [rows_k, D] after shared_head.norm, rstd
  std::vector<float> dy;          // [rows_k, D] gradient reaching y
};

TrainModel::TrainModel(ModelConfig cfg, nlohmann::json cfg_json) : cfg_(std::move(cfg)), cfg_json_(std::move(cfg_json)) {}
TrainModel::~TrainModel() = default;

namespace {

void layer_forward(TrainModel::Layer& L, const ModelConfig& c, const Seqs& s, const float* x, float* out,
                   const BalanceOpts& bal, MoeStats* ms, const Compute& cx) {
  const int64_t rows = s.rows(), D = c.hidden_size;
  const float eps = float(c.rms_norm_eps);
  L.x.assign(x, x + rows * D);
  L.n1.resize(size_t(rows * D));
  L.r1.resize(static_cast<size_t>(rows));
  rmsnorm_fwd(x, D, L.attn_norm->w.data(), L.n1.data(), D, L.r1.data(), rows, D, eps, cx.pool);
  L.h.resize(size_t(rows * D));
  if (L.mla) L.mla->forward(s, L.n1.data(), L.h.data(), L.mla_s, cx);
  else L.gqa->forward(s, L.n1.data(), L.h.data(), L.gqa_s, cx);
  for (int64_t i = 0; i < rows * D; ++i) L.h[i] += x[i];
  L.n2.resize(size_t(rows * D));
  L.r2.resize(static_cast<size_t>(rows));
  rmsnorm_fwd(L.h.data(), D, L.ffn_norm->w.data(), L.n2.data(), D, L.r2.data(), rows, D, eps, cx.pool);
  if (L.moe) L.moe->forward(s, L.n2.data(), out, L.moe_s, bal, *ms, cx);
  else L.mlp->forward(rows, L.n2.data(), out, L.mlp_s, false, cx);
  for (int64_t i = 0; i < rows * D; ++i) out[i] += L.h[i];
}

// dout: [rows, D] gradient of the layer's output; dx: [rows, D] += gradient of its input.
void layer_backward(TrainModel::Layer& L, const ModelConfig& c, const Seqs& s, const float* dout, float* dx,
                    const BalanceOpts& bal, const Compute& cx) {
  const int64_t rows = s.rows(), D = c.hidden_size;
  std::vector<float> dh(dout, dout + rows * D);  // [rows, D] residual path
  std::vector<float> dn(size_t(rows * D), 0.0f);
  if (L.moe) L.moe->backward(s, L.moe_s, L.n2.data(), dout, dn.data(), bal, cx);
  else L.mlp->backward(rows, L.mlp_s, L.n2.data(), dout, dn.data(), cx);
  rmsnorm_bwd(dn.data(), D, L.h.data(), D, L.ffn_norm->w.data(), L.r2.data(), dh.data(), D, L.ffn_norm->g.data(), rows, D, cx.pool);
  std::fill(dn.begin(), dn.end(), 0.0f);
  if (L.mla) L.mla->backward(s, L.mla_s, L.n1.data(), dh.data(), dn.data(), cx);
  else L.gqa->backward(s, L.gqa_s, L.n1.data(), dh.data(), dn.data(), cx);
  for (int64_t i = 0; i < rows * D; ++i) dx[i] += dh[i];
  rmsnorm_bwd(dn.data(), D, L.x.data(), D, L.attn_norm->w.data(), L.r1.data(), dx, D, L.attn_norm->g.data(), rows, D, cx.pool);
}

}  // namespace

void TrainModel::build() {
  const ModelConfig& c = cfg_;
  embed_ = at(Role::Embed);
  final_norm_ = at(Role::FinalNorm);
  head_ = c.tie_word_embeddings ? embed_ : at(Role::LmHead);
  if (!embed_ || !final_norm_ || !head_) fail("training: the checkpoint lacks its embedding, final norm or head");
  const bool deepseek = c.is_deepseek();
  const int64_t rope_dim = deepseek ? c.qk_rope_head_dim : c.head_dim;
  const bool interleaved = deepseek && (c.arch == Arch::DeepseekV2 || c.rope_interleave);
  rope_ = make_rope_table(c, rope_dim, interleaved, 0);

  auto make_layer = [&](int64_t l) {
    auto L = std::make_unique<Layer>();
    L->index = l;
    L->attn_norm = at(Role::AttnNorm, l);
    L->ffn_norm = at(Role::FfnNorm, l);
    if (deepseek) {
      MlaParams p{at(Role::AttnQA, l), at(Role::AttnQANorm, l), at(Role::AttnQB, l), at(Role::AttnQ, l),
                  at(Role::AttnKvA, l), at(Role::AttnKvANorm, l), at(Role::AttnKvB, l), at(Role::AttnO, l)};
      L->mla = std::make_unique<TrainMla>(cfg_, p, &rope_);
    } else {
      GqaParams p{at(Role::AttnQ, l), at(Role::AttnK, l), at(Role::AttnV, l), at(Role::AttnO, l),
                  at(Role::AttnQBias, l), at(Role::AttnKBias, l), at(Role::AttnVBias, l), at(Role::AttnOBias, l)};
      L->gqa = std::make_unique<TrainGqa>(cfg_, p, &rope_);
    }
    if (c.is_moe_layer(l)) {
      MoeParams p;
      p.router = at(Role::MoeRouter, l);
      p.router_bias = at(Role::MoeRouterBias, l);
      for (int64_t e = 0; e < c.n_routed_experts; ++e)
        p.experts.push_back({at(Role::ExpertGate, l, e), at(Role::ExpertUp, l, e), at(Role::ExpertDown, l, e)});
      p.shared = {at(Role::SharedGate, l), at(Role::SharedUp, l), at(Role::SharedDown, l)};
      L->moe_slot = int64_t(moe_layers_.size());
      moe_layers_.push_back({l, p.router_bias});
      L->moe = std::make_unique<TrainMoe>(cfg_, std::move(p));
    } else {
      MlpParams p{at(Role::FfnGate, l), at(Role::FfnUp, l), at(Role::FfnDown, l),
                  at(Role::FfnGateBias, l), at(Role::FfnUpBias, l), at(Role::FfnDownBias, l)};
      L->mlp = std::make_unique<TrainMlp>(p);
    }
    return L;
  };
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) layers_.push_back(make_layer(l));
  for (int64_t l = c.num_hidden_layers; at(Role::MtpEhProj, l); ++l) {
    auto m = std::make_unique<Mtp>();
    m->enorm = at(Role::MtpEnorm, l);
    m->hnorm = at(Role::MtpHnorm, l);
    m->eh_proj = at(Role::MtpEhProj, l);
    m->head_norm = at(Role::MtpHeadNorm, l);
    m->layer = make_layer(l);
    mtp_.push_back(std::move(m));
  }
}

LossScale count_targets(const Batch& b, int64_t modules) {
  LossScale s;
  s.sequences = b.B;
  s.main_targets = 0;
  s.mtp_targets.assign(size_t(modules), 0);
  for (int64_t r = 0; r < b.B; ++r)
    for (int64_t t = 1; t < b.T; ++t) {
      if (!b.target[size_t(r * b.T + t)]) continue;
      ++s.main_targets;
      for (int64_t k = 1; k <= modules; ++k)
        if (t >= k + 1) ++s.mtp_targets[size_t(k - 1)];  // row t-k-1 of module k predicts it
    }
  return s;
}

PassStats TrainModel::step(const Batch& b, const Objective& obj, const LossScale& scale, bool backward,
                           const Compute& cx) {
  const ModelConfig& c = cfg_;
  const int64_t B = b.B, T = b.T, D = c.hidden_size, V = c.vocab_size, rows = B * T;
  if (int64_t(b.ids.size()) != rows || int64_t(b.target.size()) != rows) fail("training batch: ids or targets do not match [B, T]");
  for (int32_t id : b.ids)
    if (id < 0 || id >= V) fail("training batch: token id {} is outside the vocabulary of {}", id, V);
  const int64_t K = obj.mtp_weight != 0 ? int64_t(mtp_.size()) : 0;
  if (obj.mtp_weight != 0 && mtp_.empty()) fail("--mtp-weight: the model has no MTP module");
  if (T > rope_.max_pos) {
    const bool interleaved = rope_.interleaved;
    rope_ = make_rope_table(c, rope_.dim, interleaved, std::max<int64_t>(T, 2 * rope_.max_pos));
  }
  const float eps = float(c.rms_norm_eps);
  const BalanceOpts bal{obj.balance_alpha, 1.0 / double(std::max<int64_t>(scale.sequences, 1))};
  PassStats st;
  st.load.assign(moe_layers_.size(), std::vector<double>(size_t(c.n_routed_experts), 0.0));
  st.mtp_sum.assign(size_t(K), 0.0);
  st.mtp_count.assign(size_t(K), 0);
  auto moe_stats = [&](Layer& L, MoeStats& ms) {
    if (!L.moe) return;
    for (size_t e = 0; e < ms.load.size(); ++e) st.load[size_t(L.moe_slot)][e] += ms.load[e];
    st.balance_sum += ms.balance;
  };

  // Main stack.
  const Seqs s{B, T};
  std::vector<float> x(size_t(rows * D)), y(size_t(rows * D));  // [rows, D]
  embed_fwd(embed_->w.data(), b.ids.data(), x.data(), rows, D);
  for (auto& L : layers_) {
    MoeStats ms;
    ms.load.assign(size_t(c.n_routed_experts), 0.0);
    layer_forward(*L, c, s, x.data(), y.data(), bal, &ms, cx);
    moe_stats(*L, ms);
    std::swap(x, y);
  }
  std::vector<float> hN(size_t(rows * D)), rN(static_cast<size_t>(rows));  // [rows, D] final hidden, [rows]
  rmsnorm_fwd(x.data(), D, final_norm_->w.data(), hN.data(), D, rN.data(), rows, D, eps, cx.pool);
  std::vector<float>& logits = logits_;  // [rows, V], reused by every head and step
  std::vector<int32_t> tgt(static_cast<size_t>(rows));
  for (int64_t r = 0; r < B; ++r)
    for (int64_t t = 0; t < T; ++t)
      tgt[size_t(r * T + t)] = t + 1 < T && b.target[size_t(r * T + t + 1)] ? b.ids[size_t(r * T + t + 1)] : -1;
  std::vector<float> dhN(size_t(rows * D), 0.0f);  // [rows, D]
  // logits = h · headᵀ, CE, and (backward) dh += dlogits · head, dhead += dlogitsᵀ · h.
  auto head_ce = [&](const float* h, int64_t n, const int32_t* targets, float sc, float* dh, double& sum,
                     int64_t& count, int64_t* correct) {
    logits.resize(size_t(n * V));
    linear_fwd(cx, h, head_->w.data(), logits.data(), n, D, V);
    for (int64_t i = 0; i < n; ++i) count += targets[i] >= 0;
    sum += cross_entropy(logits.data(), targets, n, V, sc, logits.data(), cx.pool, correct);
    if (backward) linear_bwd(cx, logits.data(), h, head_->w.data(), dh, head_->g.data(), n, D, V);
  };
  if (obj.token_loss) {
    logits.resize(size_t(rows * V));
    linear_fwd(cx, hN.data(), head_->w.data(), logits.data(), rows, D, V);
    const float inv_t = 1.0f / obj.token_temperature;
    if (inv_t != 1.0f)
      for (float& z : logits) z *= inv_t;
    std::vector<float> logp(static_cast<size_t>(rows)), ent(static_cast<size_t>(rows)), dlogp(static_cast<size_t>(rows), 0.f);
    token_logprobs(logits.data(), tgt.data(), rows, V, logp.data(), ent.data(), cx.pool);
    for (int64_t i = 0; i < rows; ++i)
      if (tgt[size_t(i)] >= 0) {
        ++st.main_count;
        st.main_sum -= double(logp[size_t(i)]);
      }
    obj.token_loss(TokenTerms{rows, tgt.data(), logp.data(), ent.data(), dlogp.data()});
    if (backward) {
      token_logprob_grad(logits.data(), tgt.data(), dlogp.data(), rows, V, cx.pool);
      if (inv_t != 1.0f)  // d(z/T)/dz = 1/T
        for (float& g : logits) g *= inv_t;
      linear_bwd(cx, logits.data(), hN.data(), head_->w.data(), dhN.data(), head_->g.data(), rows, D, V);
    }
  } else {
    head_ce(hN.data(), rows, tgt.data(), float(1.0 / double(std::max<int64_t>(scale.main_targets, 1))), dhN.data(),
            st.main_sum, st.main_count, &st.main_correct);
  }

  // MTP modules: module k runs over rows i = 0..T-k-1 of each sequence.
  const float* prev = hN.data();  // [B, T-k+1, D] h^{k-1}
  for (int64_t k = 1; k <= K; ++k) {
    Mtp& m = *mtp_[size_t(k - 1)];
    const int64_t Tk = T - k, n = B * Tk, Tp = Tk + 1;
    if (Tk < 1) fail("--mtp-weight: sequences of {} tokens are too short for MTP module {}", T, k);
    const Seqs sk{B, Tk};
    std::vector<int32_t> next(static_cast<size_t>(n)), tk(static_cast<size_t>(n));
    m.h_in.resize(size_t(n * D));
    for (int64_t r = 0; r < B; ++r)
      for (int64_t i = 0; i < Tk; ++i) {
        next[size_t(r * Tk + i)] = b.ids[size_t(r * T + i + k)];
        const int64_t t = i + k + 1;
        tk[size_t(r * Tk + i)] = t < T && b.target[size_t(r * T + t)] ? b.ids[size_t(r * T + t)] : -1;
        std::copy_n(prev + (r * Tp + i) * D, D, m.h_in.data() + (r * Tk + i) * D);
      }
    m.e.resize(size_t(n * D));
    embed_fwd(embed_->w.data(), next.data(), m.e.data(), n, D);
    m.cat.resize(size_t(n * 2 * D));
    m.er.resize(static_cast<size_t>(n));
    m.hr.resize(static_cast<size_t>(n));
    rmsnorm_fwd(m.e.data(), D, m.enorm->w.data(), m.cat.data(), 2 * D, m.er.data(), n, D, eps, cx.pool);
    rmsnorm_fwd(m.h_in.data(), D, m.hnorm->w.data(), m.cat.data() + D, 2 * D, m.hr.data(), n, D, eps, cx.pool);
    std::vector<float> z(size_t(n * D));
    linear_fwd(cx, m.cat.data(), m.eh_proj->w.data(), z.data(), n, 2 * D, D);
    m.y.resize(size_t(n * D));
    MoeStats ms;
    ms.load.assign(size_t(c.n_routed_experts), 0.0);
    layer_forward(*m.layer, c, sk, z.data(), m.y.data(), bal, &ms, cx);
    moe_stats(*m.layer, ms);
    m.o.resize(size_t(n * D));
    m.orr.resize(static_cast<size_t>(n));
    rmsnorm_fwd(m.y.data(), D, m.head_norm->w.data(), m.o.data(), D, m.orr.data(), n, D, eps, cx.pool);
    std::vector<float> dout(size_t(n * D), 0.0f);
    const int64_t denom = k - 1 < int64_t(scale.mtp_targets.size()) ? scale.mtp_targets[size_t(k - 1)] : 1;
    head_ce(m.o.data(), n, tk.data(), float(obj.mtp_weight / double(K) / double(std::max<int64_t>(denom, 1))),
            dout.data(), st.mtp_sum[size_t(k - 1)], st.mtp_count[size_t(k - 1)], nullptr);
    m.dy.assign(size_t(n * D), 0.0f);
    if (backward)
      rmsnorm_bwd(dout.data(), D, m.y.data(), D, m.head_norm->w.data(), m.orr.data(), m.dy.data(), D,
                  m.head_norm->g.data(), n, D, cx.pool);
    prev = m.y.data();
  }
  if (!backward) return st;

  // MTP backward, deepest module first: its input h^{k-1} is module k-1's output.
  for (int64_t k = K; k >= 1; --k) {
    Mtp& m = *mtp_[size_t(k - 1)];
    const int64_t Tk = T - k, n = B * Tk, Tp = Tk + 1;
    const Seqs sk{B, Tk};
    std::vector<float> dz(size_t(n * D), 0.0f);
    layer_backward(*m.layer, c, sk, m.dy.data(), dz.data(), bal, cx);
    std::vector<float> dcat(size_t(n * 2 * D), 0.0f);
    linear_bwd(cx, dz.data(), m.cat.data(), m.eh_proj->w.data(), dcat.data(), m.eh_proj->g.data(), n, 2 * D, D);
    std::vector<float> de(size_t(n * D), 0.0f), dh(size_t(n * D), 0.0f);
    rmsnorm_bwd(dcat.data(), 2 * D, m.e.data(), D, m.enorm->w.data(), m.er.data(), de.data(), D, m.enorm->g.data(), n, D, cx.pool);
    rmsnorm_bwd(dcat.data() + D, 2 * D, m.h_in.data(), D, m.hnorm->w.data(), m.hr.data(), dh.data(), D,
                m.hnorm->g.data(), n, D, cx.pool);
    std::vector<int32_t> next(static_cast<size_t>(n));
    for (int64_t r = 0; r < B; ++r)
      for (int64_t i = 0; i < Tk; ++i) next[size_t(r * Tk + i)] = b.ids[size_t(r * T + i + k)];
    embed_bwd(de.data(), next.data(), embed_->g.data(), n, D);
    float* dprev = k == 1 ? dhN.data() : mtp_[size_t(k - 2)]->dy.data();  // [B, Tp, D]
    for (int64_t r = 0; r < B; ++r)
      for (int64_t i = 0; i < Tk; ++i) {
        const float* src = dh.data() + (r * Tk + i) * D;
        float* dst = dprev + (r * Tp + i) * D;
        for (int64_t d = 0; d < D; ++d) dst[d] += src[d];
      }
  }

  // Main backward.
  std::vector<float> dx(size_t(rows * D), 0.0f);
  rmsnorm_bwd(dhN.data(), D, x.data(), D, final_norm_->w.data(), rN.data(), dx.data(), D, final_norm_->g.data(), rows, D, cx.pool);
  std::vector<float> dprev(size_t(rows * D));  // [rows, D]
  for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
    std::fill(dprev.begin(), dprev.end(), 0.0f);
    layer_backward(**it, c, s, dx.data(), dprev.data(), bal, cx);
    std::swap(dx, dprev);
  }
  embed_bwd(dx.data(), b.ids.data(), embed_->g.data(), rows, D);
  return st;
}

void TrainModel::update_biases(const std::vector<std::vector<double>>& load, double gamma) {
  if (load.size() != moe_layers_.size()) fail("bias update: {} load vectors for {} MoE layers", load.size(), moe_layers_.size());
  for (size_t i = 0; i < moe_layers_.size(); ++i) {
    Param* b = moe_layers_[i].bias;
    if (!b) continue;
    const std::vector<double>& l = load[i];
    double mean = 0;
    for (double v : l) mean += v;
    mean /= double(l.size());
    for (size_t e = 0; e < l.size(); ++e) {
      const double d = mean - l[e];
      b->w[e] += float(gamma * double((d > 0) - (d < 0)));
    }
  }
}

}  // namespace fathom::train
