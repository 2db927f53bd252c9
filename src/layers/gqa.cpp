#include "layers/gqa.h"

namespace fathom {

GqaAttention::GqaAttention(const ModelConfig& cfg, GqaWeights w, const Rope& rope) : w_(w), rope_(rope) {
  shape_.heads = cfg.num_attention_heads;
  shape_.kv_heads = cfg.num_key_value_heads;
  shape_.head_dim = cfg.head_dim;
  shape_.scale = float(cfg.attn_scale());
}

size_t GqaAttention::active_bytes() const { return w_.q->bytes() + w_.k->bytes() + w_.v->bytes() + w_.o->bytes(); }

void GqaAttention::forward(const float* h, float* out, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  GqaActs& a = ctx.acts->gqa;
  const int64_t R = ctx.batch->rows, H = shape_.heads, KVH = shape_.kv_heads, hd = shape_.head_dim, kvw = KVH * hd;
  float* q = a.q.get(be, size_t(R * H * hd));  // [R, H, hd]
  float* k = a.k.get(be, size_t(R * kvw));     // [R, KVH, hd]
  float* v = a.v.get(be, size_t(R * kvw));     // [R, KVH, hd]
  linear(be, *w_.q, h, R, q, w_.q_bias);
  linear(be, *w_.k, h, R, k, w_.k_bias);
  linear(be, *w_.v, h, R, v, w_.v_bias);
  const RopeParams rp = rope_.params();
  be.rope(rp, {q, R, hd, H * hd}, H, hd, ctx.batch->pos.data());
  be.rope(rp, {k, R, hd, kvw}, KVH, hd, ctx.batch->pos.data());
  be.kv_write(*ctx.cache, ctx.layer, *ctx.batch, {k, R, kvw, kvw}, 0);
  be.kv_write(*ctx.cache, ctx.layer, *ctx.batch, {v, R, kvw, kvw}, kvw);
  float* attn = a.attn.get(be, size_t(R * H * hd));  // [R, H*hd]
  be.attention_gqa(shape_, q, *ctx.cache, ctx.layer, *ctx.batch, attn);
  linear(be, *w_.o, attn, R, out, w_.o_bias);
}

}  // namespace fathom
