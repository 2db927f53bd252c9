#include "layers/ffn.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "layers/ops.h"

namespace fathom {

size_t MlpWeights::bytes() const {
  auto b = [](const cpu::WeightView* w) { return w ? w->bytes() : 0; };
  return b(gate) + b(up) + b(down);
}

void mlp_forward(const MlpWeights& w, const float* x, int64_t rows, float* out, const LayerCtx& ctx,
                 size_t base) {
  const int64_t I = w.gate->rows;
  float* g = ctx.scratch->get(base, size_t(rows * I));      // [rows, I]
  float* u = ctx.scratch->get(base + 1, size_t(rows * I));  // [rows, I]
  // Gate and up as one batch of products (one parallel section), biases after.
  const cpu::MatmulTask tasks[2] = {{w.gate, x, rows, g}, {w.up, x, rows, u}};
  cpu::matmul_many(tasks, 2, *ctx.pool);
  add_bias(g, rows, I, w.gate_bias);
  add_bias(u, rows, I, w.up_bias);
  swiglu(g, u, rows * I, *ctx.pool);
  linear(*w.down, g, rows, out, *ctx.pool, w.down_bias);
}

void Mlp::forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) {
  mlp_forward(w_, h, rows, out, ctx, 0);
}

RouterConfig RouterConfig::from(const ModelConfig& c) {
  RouterConfig r;
  r.n_experts = c.n_routed_experts;
  r.top_k = c.num_experts_per_tok;
  r.n_group = c.n_group;
  r.topk_group = c.topk_group;
  r.scoring = c.scoring_func;
  r.method = c.topk_method;
  // transformers' DeepSeek-V2 port never renormalizes; V3 does when norm_topk_prob is set.
  r.norm_topk_prob = c.arch == Arch::DeepseekV3 && c.norm_topk_prob;
  r.routed_scaling_factor = c.routed_scaling_factor;
  return r;
}

// Indices of the k largest of v[0..n), largest first; ties go to the lower index.
// n ≤ kMaxExperts (checked when the config is read).
static void topk(const float* v, int64_t n, int64_t k, int32_t* out) {
  int32_t idx[kMaxExperts];
  std::iota(idx, idx + n, 0);
  std::partial_sort(idx, idx + k, idx + n, [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy(idx, idx + k, out);
}

void route_token(const RouterConfig& rc, const float* logits, const float* bias, int32_t* ids, float* weights,
                 float* scratch) {
  const int64_t E = rc.n_experts;
  float* scores = scratch;      // [E] the weights come from these
  float* choice = scratch + E;  // [E] selection scores (biased, group-masked)
  std::copy(logits, logits + E, scores);
  if (rc.scoring == ScoringFunc::Softmax) ops::softmax(scores, E);
  else
    for (int64_t e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-scores[e]));
  for (int64_t e = 0; e < E; ++e) choice[e] = scores[e] + (bias ? bias[e] : 0.f);

  if (rc.method != TopkMethod::Greedy && rc.n_group > 1) {
    const int64_t G = rc.n_group, per = E / G;
    float gs[kMaxExperts];  // group scores; n_group ≤ n_experts
    for (int64_t g = 0; g < G; ++g) {
      const float* c = choice + g * per;
      if (rc.method == TopkMethod::NoauxTc) {  // sum of the group's top two biased scores
        float a = -INFINITY, b = -INFINITY;
        for (int64_t i = 0; i < per; ++i) {
          if (c[i] > a) { b = a; a = c[i]; }
          else if (c[i] > b) b = c[i];
        }
        gs[g] = a + b;
      } else {  // group_limited_greedy: the group's best score
        gs[g] = *std::max_element(c, c + per);
      }
    }
    int32_t kp[kMaxExperts];
    topk(gs, G, rc.topk_group, kp);
    // Experts outside the kept groups can never be chosen, whatever their scores.
    for (int64_t g = 0; g < G; ++g) {
      bool kept = std::find(kp, kp + rc.topk_group, int32_t(g)) != kp + rc.topk_group;
      if (!kept) std::fill(choice + g * per, choice + (g + 1) * per, -INFINITY);
    }
  }
  topk(choice, E, rc.top_k, ids);
  float sum = 0.f;
  for (int64_t k = 0; k < rc.top_k; ++k) {
    weights[k] = scores[ids[k]];
    sum += weights[k];
  }
  if (rc.norm_topk_prob)
    for (int64_t k = 0; k < rc.top_k; ++k) weights[k] /= (sum + 1e-20f);
  for (int64_t k = 0; k < rc.top_k; ++k) weights[k] *= float(rc.routed_scaling_factor);
}

Moe::Moe(const ModelConfig& cfg, MoeWeights w) : rc_(RouterConfig::from(cfg)), w_(std::move(w)) {
  by_expert_.resize(size_t(rc_.n_experts));
}

size_t Moe::active_bytes() const {
  return w_.router->bytes() + w_.shared.bytes() +
         size_t(rc_.top_k) * w_.experts[0].bytes();
}

enum : size_t { kLogits, kW, kRouteTmp, kGather, kGate, kUp, kExpOut, kShared };

void Moe::forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) {
  const int64_t E = rc_.n_experts, K = rc_.top_k, D = w_.router->cols, I = w_.experts[0].gate->rows;
  Scratch& s = *ctx.scratch;
  float* logits = s.get(kLogits, size_t(rows * E));  // [rows, E]
  linear(*w_.router, h, rows, logits, *ctx.pool);
  float* wts = s.get(kW, size_t(rows * K));  // [rows, K]
  ids_.resize(size_t(rows * K));
  float* tmp = s.get(kRouteTmp, size_t(2 * E));
  for (auto& v : by_expert_) v.clear();
  for (int64_t i = 0; i < rows; ++i) {
    route_token(rc_, logits + i * E, w_.bias ? w_.bias->data() : nullptr, &ids_[size_t(i * K)], wts + i * K, tmp);
    for (int64_t k = 0; k < K; ++k) by_expert_[size_t(ids_[size_t(i * K + k)])].push_back(int32_t(i * K + k));
  }
  // Tokens grouped by expert: each selected expert runs once over all its tokens, and all of
  // them (with the shared experts) go to the pool as one batch of products.
  const int64_t NR = rows * K;
  float* xg = s.get(kGather, size_t(NR * D));  // [NR, D] rows grouped by expert
  float* y = s.get(kExpOut, size_t(NR * D));   // [NR, D]
  const bool shared = w_.shared.gate != nullptr;
  const int64_t SI = shared ? w_.shared.gate->rows : 0;
  // Routed then shared gate (and up) products in one buffer: one SwiGLU pass over both.
  float* g = s.get(kGate, size_t(NR * I + rows * SI));  // [NR, I] then [rows, SI]
  float* u = s.get(kUp, size_t(NR * I + rows * SI));    // [NR, I] then [rows, SI]
  float* sg = shared ? g + NR * I : nullptr;            // [rows, SI]
  float* su = shared ? u + NR * I : nullptr;            // [rows, SI]
  float* sy = shared ? s.get(kShared, size_t(rows * D)) : nullptr;  // [rows, D]
  tasks_.clear();
  int64_t off = 0;
  for (int64_t e = 0; e < E; ++e) {
    const auto& sel = by_expert_[size_t(e)];
    if (sel.empty()) continue;
    const int64_t n = int64_t(sel.size());
    // One token (decode): every expert reads h itself, so its quantization is shared.
    const float* x = rows == 1 ? h : xg + off * D;
    if (rows > 1)
      for (int64_t j = 0; j < n; ++j)
        std::memcpy(xg + (off + j) * D, h + (sel[size_t(j)] / K) * D, size_t(D) * sizeof(float));
    const MlpWeights& ew = w_.experts[size_t(e)];
    tasks_.push_back({ew.gate, x, n, g + off * I});
    tasks_.push_back({ew.up, x, n, u + off * I});
    off += n;
  }
  if (shared) {
    tasks_.push_back({w_.shared.gate, h, rows, sg});
    tasks_.push_back({w_.shared.up, h, rows, su});
  }
  cpu::matmul_many(tasks_.data(), tasks_.size(), *ctx.pool);
  swiglu(g, u, NR * I + rows * SI, *ctx.pool);
  tasks_.clear();
  off = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = int64_t(by_expert_[size_t(e)].size());
    if (!n) continue;
    tasks_.push_back({w_.experts[size_t(e)].down, g + off * I, n, y + off * D});
    off += n;
  }
  if (shared) tasks_.push_back({w_.shared.down, sg, rows, sy});
  cpu::matmul_many(tasks_.data(), tasks_.size(), *ctx.pool);

  // Each token's routed outputs are summed in expert order, whatever else is in the batch.
  std::fill(out, out + rows * D, 0.f);
  off = 0;
  for (int64_t e = 0; e < E; ++e) {
    const auto& sel = by_expert_[size_t(e)];
    for (size_t j = 0; j < sel.size(); ++j)
      ops::axpy(wts[sel[j]], y + (off + int64_t(j)) * D, out + (sel[j] / K) * D, D);
    off += int64_t(sel.size());
  }
  if (shared)
    for (int64_t i = 0; i < rows * D; ++i) out[i] += sy[i];
}

}  // namespace fathom
