#include "layers/mla.h"

namespace fathom {

MlaAttention::MlaAttention(Backend& be, const ModelConfig& cfg, MlaWeights w, const Rope& rope)
    : w_(std::move(w)), rope_(rope) {
  H_ = cfg.num_attention_heads;
  nope_ = cfg.qk_nope_head_dim;
  rope_dim_ = cfg.qk_rope_head_dim;
  v_ = cfg.v_head_dim;
  r_ = cfg.kv_lora_rank;
  eps_ = cfg.rms_norm_eps;
  shape_.heads = H_;
  shape_.scale = float(cfg.attn_scale());
  shape_.latent = r_;
  shape_.rope = rope_dim_;
  shape_.nope = nope_;
  shape_.v = v_;
  if (w_.uk_t && w_.uv) abs_ = be.mla_absorbed_from(*w_.uk_t, *w_.uv, H_);
  if (abs_.uk_t.empty()) abs_ = be.prepare_mla_absorbed(*w_.kv_b, H_, nope_, v_);
}

size_t MlaAttention::active_bytes() const {
  auto b = [](const Weight* w) { return w ? w->bytes() : 0; };
  // Decoding reads kv_b through its absorbed halves.
  return b(w_.q_a) + b(w_.q_b) + b(w_.q) + b(w_.kv_a) + abs_.bytes + b(w_.o);
}

void MlaAttention::forward(const float* h, float* out, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MlaActs& a = ctx.acts->mla;
  const int64_t R = ctx.batch->rows, qk = nope_ + rope_dim_, W = r_ + rope_dim_;
  float* q = a.q.get(be, size_t(R * H_ * qk));  // [R, H, nope + rope]
  float* kv = a.kv.get(be, size_t(R * W));      // [R, kv_lora + rope]
  // The products of h go to the backend as one batch (one parallel section, not two).
  float* qa = w_.q_a ? a.q_a.get(be, size_t(R * w_.q_a->rows())) : nullptr;  // [R, q_lora]
  tasks_.clear();
  tasks_.push_back({w_.q_a ? w_.q_a : w_.q, h, R, w_.q_a ? qa : q});
  tasks_.push_back({w_.kv_a, h, R, kv});
  be.matmul_many(tasks_.data(), tasks_.size());
  if (w_.q_a) {
    const int64_t ql = w_.q_a->rows();
    be.rmsnorm({qa, R, ql, ql}, *w_.q_a_norm, {qa, R, ql, ql}, eps_);
    linear(be, *w_.q_b, qa, R, q);
  }

  // Norm the latent, rope the shared key and the queries, then store into the cache.
  const RopeParams rp = rope_.params();
  be.rmsnorm({kv, R, r_, W}, *w_.kv_a_norm, {kv, R, r_, W}, eps_);
  be.rope(rp, {kv + r_, R, rope_dim_, W}, 1, rope_dim_, ctx.batch->pos.data());
  be.rope(rp, {q + nope_, R, rope_dim_, H_ * qk}, H_, qk, ctx.batch->pos.data());
  be.kv_write(*ctx.cache, ctx.layer, *ctx.batch, {kv, R, W, W}, 0);

  float* attn = a.attn.get(be, size_t(R * H_ * v_));  // [R, H*v]
  if (ctx.attn == AttnMode::Absorbed) attend_absorbed(q, attn, ctx);
  else attend_naive(q, attn, ctx);
  linear(be, *w_.o, attn, R, out);
}

void MlaAttention::attend_absorbed(float* q, float* o, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MlaActs& a = ctx.acts->mla;
  const int64_t R = ctx.batch->rows, qk = nope_ + rope_dim_, W = r_ + rope_dim_;
  float* qn = a.q_nope.get(be, size_t(H_ * R * nope_));  // [H, R, nope]
  float* qlat = a.q_lat.get(be, size_t(H_ * R * r_));    // [H, R, r]
  float* ql = a.q_full.get(be, size_t(H_ * R * W));      // [H, R, r + rope]: q_lat then q_pe
  // q_lat = W_UKᵀ q_nope, per head, as one batch of products.
  for (int64_t h = 0; h < H_; ++h) be.copy_rows({q + h * qk, R, nope_, H_ * qk}, {qn + h * R * nope_, R, nope_, nope_});
  tasks_.clear();
  for (int64_t h = 0; h < H_; ++h) tasks_.push_back({abs_.uk_t[size_t(h)].get(), qn + h * R * nope_, R, qlat + h * R * r_});
  be.matmul_many(tasks_.data(), tasks_.size());
  for (int64_t h = 0; h < H_; ++h) {
    be.copy_rows({qlat + h * R * r_, R, r_, r_}, {ql + h * R * W, R, r_, W});
    be.copy_rows({q + h * qk + nope_, R, rope_dim_, H_ * qk}, {ql + h * R * W + r_, R, rope_dim_, W});
  }
  // Attention in the latent space: the cache row [c | k_pe] is scored against [q_lat | q_pe].
  float* c_all = a.ctx.get(be, size_t(H_ * R * r_));  // [H, R, r] Σ p·c per row and head
  be.attention_mla_latent(shape_, ql, *ctx.cache, ctx.layer, *ctx.batch, c_all);
  // o_h = W_UV_h · c_h, per head, then [H, R, v] → [R, H*v].
  float* oh = a.o_heads.get(be, size_t(H_ * R * v_));  // [H, R, v]
  tasks_.clear();
  for (int64_t h = 0; h < H_; ++h) tasks_.push_back({abs_.uv[size_t(h)].get(), c_all + h * R * r_, R, oh + h * R * v_});
  be.matmul_many(tasks_.data(), tasks_.size());
  for (int64_t h = 0; h < H_; ++h) be.copy_rows({oh + h * R * v_, R, v_, v_}, {o + h * v_, R, v_, H_ * v_});
}

void MlaAttention::attend_naive(float* q, float* o, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MlaActs& a = ctx.acts->mla;
  const BatchRows& b = *ctx.batch;
  const int64_t R = b.rows, KV = nope_ + v_;
  // One chunk (consecutive rows of one slot) at a time: expand its whole prefix once.
  int64_t i0 = 0;
  while (i0 < R) {
    int64_t i1 = i0 + 1;
    while (i1 < R && b.slot[size_t(i1)] == b.slot[size_t(i0)] && b.pos[size_t(i1)] == b.pos[size_t(i1 - 1)] + 1) ++i1;
    const int64_t slot = b.slot[size_t(i0)], P = b.pos[size_t(i1 - 1)] + 1;
    float* lat = a.lat.get(be, size_t(P * r_));            // [P, r]
    float* kvx = a.kv_full.get(be, size_t(P * H_ * KV));   // [P, H, nope + v]
    be.kv_read(*ctx.cache, ctx.layer, slot, 0, {lat, P, r_, r_});
    linear(be, *w_.kv_b, lat, P, kvx);
    be.attention_mla_naive(shape_, q, kvx, *ctx.cache, ctx.layer, b, i0, i1, o);
    i0 = i1;
  }
}

}  // namespace fathom
