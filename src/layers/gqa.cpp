#include "layers/gqa.h"

#include "layers/ops.h"

namespace fathom {

enum : size_t { kQ, kK, kV, kAttn, kThread };

GqaAttention::GqaAttention(const ModelConfig& cfg, GqaWeights w, const Rope& rope)
    : cfg_(cfg), w_(w), rope_(rope), H_(cfg.num_attention_heads), KVH_(cfg.num_key_value_heads), hd_(cfg.head_dim),
      scale_(float(cfg.attn_scale())) {}

size_t GqaAttention::active_bytes() const {
  auto b = [](const cpu::WeightView* w) { return w->bytes(); };
  return b(w_.q) + b(w_.k) + b(w_.v) + b(w_.o);
}

void GqaAttention::forward(const float* h, float* out, const LayerCtx& ctx) {
  const int64_t R = ctx.batch->rows, kvw = KVH_ * hd_;
  ThreadPool& pool = *ctx.pool;
  Scratch& s = *ctx.scratch;
  float* q = s.get(kQ, size_t(R * H_ * hd_));  // [R, H, hd]
  float* k = s.get(kK, size_t(R * kvw));       // [R, KVH, hd]
  float* v = s.get(kV, size_t(R * kvw));       // [R, KVH, hd]
  linear(*w_.q, h, R, q, pool, w_.q_bias);
  linear(*w_.k, h, R, k, pool, w_.k_bias);
  linear(*w_.v, h, R, v, pool, w_.v_bias);
  for (int64_t i = 0; i < R; ++i) {
    const int64_t pos = ctx.batch->pos[i];
    rope_.apply(q + i * H_ * hd_, H_, hd_, pos);
    rope_.apply(k + i * kvw, KVH_, hd_, pos);
    float* c = ctx.cache->at(ctx.layer, ctx.batch->slot[i], pos);
    std::memcpy(c, k + i * kvw, size_t(kvw) * 4);
    std::memcpy(c + kvw, v + i * kvw, size_t(kvw) * 4);
  }
  float* attn = s.get(kAttn, size_t(R * H_ * hd_));  // [R, H*hd]
  const int64_t max_ctx = ctx.cache->max_ctx(), W = 2 * kvw, group = H_ / KVH_;
  float* tbuf = s.get(kThread, size_t(max_ctx * pool.size()));
  pool.parallel_for(R * H_, 1, [&](int64_t b, int64_t e, int t) {
    float* sc = tbuf + max_ctx * t;
    for (int64_t ih = b; ih < e; ++ih) {
      const int64_t i = ih / H_, hh = ih % H_, kh = hh / group, P = ctx.batch->pos[i] + 1;
      const float* qi = q + (i * H_ + hh) * hd_;
      const float* c0 = ctx.cache->at(ctx.layer, ctx.batch->slot[i], 0);
      for (int64_t tp = 0; tp < P; ++tp) sc[tp] = ops::dot(qi, c0 + tp * W + kh * hd_, hd_) * scale_;
      ops::softmax(sc, P);
      float* oi = attn + (i * H_ + hh) * hd_;
      std::fill(oi, oi + hd_, 0.f);
      for (int64_t tp = 0; tp < P; ++tp) ops::axpy(sc[tp], c0 + tp * W + kvw + kh * hd_, oi, hd_);
    }
  });
  linear(*w_.o, attn, R, out, pool, w_.o_bias);
}

}  // namespace fathom
