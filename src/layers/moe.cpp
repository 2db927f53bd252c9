// DeepSeekMoE: route → dispatch → experts → combine.
#include "core/error.h"
#include "layers/ffn.h"

namespace fathom {

Moe::Moe(const ModelConfig& cfg, MoeWeights w, ExpertPlacement placement)
    : rc_(RouterConfig::from(cfg)), w_(std::move(w)), placement_(std::move(placement)) {
  by_expert_.resize(size_t(rc_.n_experts));
  D_ = w_.router->cols();
  for (const MlpWeights& e : w_.experts)
    if (e.gate) I_ = e.gate->rows();
  SI_ = w_.shared.gate ? w_.shared.gate->rows() : 0;
}

size_t Moe::active_bytes() const {
  size_t expert = 0;
  for (const MlpWeights& e : w_.experts)
    if (e.gate) expert = e.bytes();
  return w_.router->bytes() + w_.shared.bytes() + size_t(rc_.top_k) * expert;
}

void Moe::route(const float* h, int64_t rows, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MoeActs& a = ctx.acts->moe;
  const int64_t E = rc_.n_experts, K = rc_.top_k;
  float* logits = a.logits.get(be, size_t(rows * E));  // [rows, E]
  be.matmul(*w_.router, h, rows, logits);
  a.ids.resize(size_t(rows * K));
  a.weights.resize(size_t(rows * K));
  be.moe_route(rc_, logits, rows, w_.bias, a.ids.data(), a.weights.data());
}

void Moe::dispatch(const float* h, int64_t rows, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MoeActs& a = ctx.acts->moe;
  const int64_t E = rc_.n_experts, K = rc_.top_k;
  for (auto& v : by_expert_) v.clear();
  for (int64_t i = 0; i < rows * K; ++i) {
    const int32_t e = a.ids[size_t(i)];
    if (placement_.holds(e)) by_expert_[size_t(e)].push_back(int32_t(i));
  }
  MoePlan& p = a.plan;
  p.experts.clear();
  p.count.clear();
  p.src_row.clear();
  p.weight.clear();
  for (int64_t e = 0; e < E; ++e) {
    const auto& sel = by_expert_[size_t(e)];
    if (sel.empty()) continue;
    p.experts.push_back(int32_t(e));
    p.count.push_back(int64_t(sel.size()));
    for (int32_t s : sel) {
      p.src_row.push_back(s / int32_t(K));
      p.weight.push_back(a.weights[size_t(s)]);
    }
  }
  // One token (decode): every expert reads h itself, so its quantization is shared.
  if (rows > 1) {
    const int64_t NR = int64_t(p.src_row.size());
    float* xg = a.x_routed.get(be, size_t(NR * D_));  // [NR, D] rows grouped by expert
    be.gather_rows(h, D_, p.src_row.data(), NR, xg);
  }
}

void Moe::experts(const float* h, int64_t rows, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MoeActs& a = ctx.acts->moe;
  const MoePlan& p = a.plan;
  const int64_t NR = int64_t(p.src_row.size()), I = I_, SI = SI_, D = D_;
  const bool shared = w_.shared.gate != nullptr;
  // Routed then shared gate (and up) products in one buffer: one SwiGLU pass over both.
  float* g = a.gate.get(be, size_t(NR * I + rows * SI));  // [NR, I] then [rows, SI]
  float* u = a.up.get(be, size_t(NR * I + rows * SI));    // [NR, I] then [rows, SI]
  float* y = a.y.get(be, size_t(NR * D));                 // [NR, D]
  float* sg = g + NR * I;                                 // [rows, SI]
  float* su = u + NR * I;                                 // [rows, SI]
  float* sy = shared ? a.shared_y.get(be, size_t(rows * D)) : nullptr;  // [rows, D]
  const float* xg = rows > 1 ? a.x_routed.data() : h;
  auto& tasks = a.tasks;
  // Each selected expert runs once over all its rows, and all of them (with the shared
  // experts) go to the backend as one batch of products.
  tasks.clear();
  int64_t off = 0;
  for (size_t j = 0; j < p.experts.size(); ++j) {
    const MlpWeights& ew = w_.experts[size_t(p.experts[j])];
    const float* x = rows == 1 ? h : xg + off * D;
    tasks.push_back({ew.gate, x, p.count[j], g + off * I});
    tasks.push_back({ew.up, x, p.count[j], u + off * I});
    off += p.count[j];
  }
  if (shared) {
    tasks.push_back({w_.shared.gate, h, rows, sg});
    tasks.push_back({w_.shared.up, h, rows, su});
  }
  be.matmul_many(tasks.data(), tasks.size());
  be.swiglu(g, u, NR * I + rows * SI);
  tasks.clear();
  off = 0;
  for (size_t j = 0; j < p.experts.size(); ++j) {
    tasks.push_back({w_.experts[size_t(p.experts[j])].down, g + off * I, p.count[j], y + off * D});
    off += p.count[j];
  }
  if (shared) tasks.push_back({w_.shared.down, sg, rows, sy});
  be.matmul_many(tasks.data(), tasks.size());
}

void Moe::combine(float* out, int64_t rows, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MoeActs& a = ctx.acts->moe;
  const MoePlan& p = a.plan;
  be.fill(out, 0.f, size_t(rows * D_));
  be.scatter_add(a.y.data(), D_, p.src_row.data(), p.weight.data(), int64_t(p.src_row.size()), out);
  if (w_.shared.gate) be.add(out, a.shared_y.data(), rows * D_);
}

void Moe::forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) {
  route(h, rows, ctx);
  dispatch(h, rows, ctx);
  experts(h, rows, ctx);
  combine(out, rows, ctx);
}

}  // namespace fathom
