#include "layers/mla.h"

#include <cmath>

#include "layers/ops.h"

namespace fathom {

enum : size_t { kQ, kQa, kKv, kAttn, kNaiveLat, kNaiveKv, kThread };

MlaAttention::MlaAttention(const ModelConfig& cfg, MlaWeights w, const Rope& rope)
    : cfg_(cfg), w_(std::move(w)), rope_(rope) {
  H_ = cfg.num_attention_heads;
  nope_ = cfg.qk_nope_head_dim;
  rope_dim_ = cfg.qk_rope_head_dim;
  v_ = cfg.v_head_dim;
  r_ = cfg.kv_lora_rank;
  scale_ = float(cfg.attn_scale());
}

size_t MlaAttention::active_bytes() const {
  auto b = [](const cpu::WeightView* w) { return w ? w->row_bytes() * size_t(w->rows) : 0; };
  return b(w_.q_a) + b(w_.q_b) + b(w_.q) + b(w_.kv_a) + b(w_.kv_b) + b(w_.o);
}

void MlaAttention::forward(const float* h, float* out, const LayerCtx& ctx) {
  const int64_t R = ctx.batch->rows, qk = nope_ + rope_dim_, W = r_ + rope_dim_;
  ThreadPool& pool = *ctx.pool;
  Scratch& s = *ctx.scratch;

  float* q = s.get(kQ, size_t(R * H_ * qk));  // [R, H, nope + rope]
  if (w_.q_a) {
    float* qa = s.get(kQa, size_t(R * w_.q_a->rows));  // [R, q_lora]
    linear(*w_.q_a, h, R, qa, pool);
    ops::rmsnorm(qa, w_.q_a_norm->data(), qa, R, w_.q_a->rows, cfg_.rms_norm_eps);
    linear(*w_.q_b, qa, R, q, pool);
  } else {
    linear(*w_.q, h, R, q, pool);
  }
  float* kv = s.get(kKv, size_t(R * W));  // [R, kv_lora + rope]
  linear(*w_.kv_a, h, R, kv, pool);

  // Norm the latent, rope the shared key and the queries, then store into the cache.
  for (int64_t i = 0; i < R; ++i) {
    const int64_t slot = ctx.batch->slot[i], pos = ctx.batch->pos[i];
    float* kvi = kv + i * W;
    ops::rmsnorm(kvi, w_.kv_a_norm->data(), kvi, 1, r_, cfg_.rms_norm_eps);
    rope_.apply(kvi + r_, 1, rope_dim_, pos);
    rope_.apply(q + i * H_ * qk + nope_, H_, qk, pos);
    std::memcpy(ctx.cache->at(ctx.layer, slot, pos), kvi, size_t(W) * sizeof(float));
  }

  float* attn = s.get(kAttn, size_t(R * H_ * v_));  // [R, H*v]
  if (ctx.attn == AttnMode::Absorbed) attend_absorbed(q, attn, ctx);
  else attend_naive(q, attn, ctx);
  linear(*w_.o, attn, R, out, pool);
}

void MlaAttention::attend_absorbed(const float* q, float* o, const LayerCtx& ctx) {
  const int64_t R = ctx.batch->rows, qk = nope_ + rope_dim_, W = r_ + rope_dim_;
  const int64_t max_ctx = ctx.cache->max_ctx(), nthreads = ctx.pool->size();
  // per thread: q_lat [r], ctx [r], scores [max_ctx]
  const size_t per = size_t(2 * r_ + max_ctx);
  float* tbuf = ctx.scratch->get(kThread, per * size_t(nthreads));
  const float* wkv = w_.kv_b_f32.data();
  ctx.pool->parallel_for(R * H_, 1, [&](int64_t b, int64_t e, int t) {
    float* qlat = tbuf + per * size_t(t);
    float* c = qlat + r_;
    float* sc = c + r_;
    for (int64_t ih = b; ih < e; ++ih) {
      const int64_t i = ih / H_, hd = ih % H_;
      const int64_t slot = ctx.batch->slot[i], P = ctx.batch->pos[i] + 1;
      const float* qi = q + (i * H_ + hd) * qk;
      const float* wuk = wkv + hd * (nope_ + v_) * r_;  // [nope, r]
      std::fill(qlat, qlat + r_, 0.f);
      for (int64_t n = 0; n < nope_; ++n) ops::axpy(qi[n], wuk + n * r_, qlat, r_);
      const float* cache0 = ctx.cache->at(ctx.layer, slot, 0);
      for (int64_t tpos = 0; tpos < P; ++tpos) {
        const float* e_ = cache0 + tpos * W;
        sc[tpos] = (ops::dot(qlat, e_, r_) + ops::dot(qi + nope_, e_ + r_, rope_dim_)) * scale_;
      }
      ops::softmax(sc, P);
      std::fill(c, c + r_, 0.f);
      for (int64_t tpos = 0; tpos < P; ++tpos) ops::axpy(sc[tpos], cache0 + tpos * W, c, r_);
      const float* wuv = wuk + nope_ * r_;  // [v, r]
      float* oi = o + i * H_ * v_ + hd * v_;
      for (int64_t j = 0; j < v_; ++j) oi[j] = ops::dot(wuv + j * r_, c, r_);
    }
  });
}

void MlaAttention::attend_naive(const float* q, float* o, const LayerCtx& ctx) {
  const int64_t R = ctx.batch->rows, qk = nope_ + rope_dim_, W = r_ + rope_dim_, KV = nope_ + v_;
  // One chunk (consecutive rows of one slot) at a time: expand its whole prefix once.
  int64_t i0 = 0;
  while (i0 < R) {
    int64_t i1 = i0 + 1;
    while (i1 < R && ctx.batch->slot[i1] == ctx.batch->slot[i0] && ctx.batch->pos[i1] == ctx.batch->pos[i1 - 1] + 1)
      ++i1;
    const int64_t slot = ctx.batch->slot[i0], P = ctx.batch->pos[i1 - 1] + 1;
    float* lat = ctx.scratch->get(kNaiveLat, size_t(P * r_));      // [P, r]
    float* kvx = ctx.scratch->get(kNaiveKv, size_t(P * H_ * KV));  // [P, H, nope + v]
    for (int64_t t = 0; t < P; ++t) std::memcpy(lat + t * r_, ctx.cache->at(ctx.layer, slot, t), size_t(r_) * 4);
    linear(*w_.kv_b, lat, P, kvx, *ctx.pool);
    const int64_t max_ctx = ctx.cache->max_ctx();
    float* tbuf = ctx.scratch->get(kThread, size_t(max_ctx * ctx.pool->size()));
    ctx.pool->parallel_for((i1 - i0) * H_, 1, [&](int64_t b, int64_t e, int t) {
      float* sc = tbuf + max_ctx * t;
      for (int64_t ih = b; ih < e; ++ih) {
        const int64_t i = i0 + ih / H_, hd = ih % H_, Pi = ctx.batch->pos[i] + 1;
        const float* qi = q + (i * H_ + hd) * qk;
        for (int64_t tpos = 0; tpos < Pi; ++tpos) {
          const float* k = kvx + (tpos * H_ + hd) * KV;
          const float* kpe = ctx.cache->at(ctx.layer, slot, tpos) + r_;
          sc[tpos] = (ops::dot(qi, k, nope_) + ops::dot(qi + nope_, kpe, rope_dim_)) * scale_;
        }
        ops::softmax(sc, Pi);
        float* oi = o + i * H_ * v_ + hd * v_;
        std::fill(oi, oi + v_, 0.f);
        for (int64_t tpos = 0; tpos < Pi; ++tpos) ops::axpy(sc[tpos], kvx + (tpos * H_ + hd) * KV + nope_, oi, v_);
      }
    });
    i0 = i1;
  }
}

}  // namespace fathom
