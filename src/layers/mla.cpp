#include "layers/mla.h"

#include <algorithm>
#include <atomic>
#include <cmath>

#include "backend/cpu/quantize.h"
#include "backend/cpu/vec.h"
#include "layers/ops.h"

namespace fathom {

enum : size_t { kQ, kQa, kKv, kAttn, kNaiveLat, kNaiveKv, kThread, kQn, kQlat, kQl, kCtx, kOh, kScores };

cpu::WeightView MlaAbsorbedWeights::head(const cpu::WeightView& w, int64_t h, int64_t n) {
  return cpu::slice_rows(w, h * n, n);
}

MlaAbsorbedWeights MlaAbsorbedWeights::from(const cpu::WeightView& kv_b, int64_t H, int64_t nope, int64_t v,
                                            bool repack) {
  const int64_t r = kv_b.cols, per = nope + v;
  std::vector<float> full(size_t(kv_b.rows * r));  // [H*(nope+v), r] exact values
  for (int64_t i = 0; i < kv_b.rows; ++i) cpu::dequantize_row(kv_b, i, full.data() + i * r);
  // Keep block formats and bf16 as they are; anything else (f16, fp8 with scales) as f32,
  // which holds their values exactly.
  auto pick = [&](int64_t cols) {
    if ((kv_b.dtype == DType::Q8_0 || kv_b.dtype == DType::Q4_0) && cols % 32 == 0) return kv_b.dtype;
    return kv_b.dtype == DType::BF16 ? DType::BF16 : DType::F32;
  };
  auto store = [](DType t, const float* src, int64_t n, uint8_t* dst) {
    if (t == DType::F32) std::memcpy(dst, src, size_t(n) * 4);
    else if (t == DType::BF16)
      for (int64_t k = 0; k < n; ++k) {
        const uint16_t b = f32_to_bf16(src[k]);
        std::memcpy(dst + 2 * k, &b, 2);
      }
    else cpu::quantize_row(t, src, n, dst);
  };
  MlaAbsorbedWeights a;
  a.uv.dtype = pick(r);
  a.uv.rows = H * v;
  a.uv.cols = r;
  a.uv_data = cpu::alloc_aligned(a.uv.bytes());
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < v; ++j) {
      uint8_t* dst = a.uv_data.get() + size_t(h * v + j) * a.uv.row_bytes();
      if (a.uv.dtype == kv_b.dtype) cpu::copy_row_blocks(kv_b, h * per + nope + j, dst);  // same values
      else store(a.uv.dtype, full.data() + (h * per + nope + j) * r, r, dst);
    }
  a.uv.data = a.uv_data.get();
  a.uk_t.dtype = pick(nope);
  a.uk_t.rows = H * r;
  a.uk_t.cols = nope;
  a.uk_t_data = cpu::alloc_aligned(a.uk_t.bytes());
  std::vector<float> col(static_cast<size_t>(nope));  // [nope]
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < r; ++j) {
      for (int64_t n = 0; n < nope; ++n) col[size_t(n)] = full[size_t((h * per + n) * r + j)];
      store(a.uk_t.dtype, col.data(), nope, a.uk_t_data.get() + size_t(h * r + j) * a.uk_t.row_bytes());
    }
  a.uk_t.data = a.uk_t_data.get();
  // Per-head slices must not split a packed group of 16 rows.
  auto pack = [&](cpu::WeightView& w, cpu::AlignedBytes& data, int64_t per_head) {
    if (!repack || !cpu::packing_pays(w.dtype) || per_head % cpu::kPackRows) return;
    cpu::AlignedBytes packed;
    w = cpu::pack16(w, packed, nullptr);
    data = std::move(packed);
  };
  pack(a.uv, a.uv_data, v);
  pack(a.uk_t, a.uk_t_data, r);
  return a;
}

MlaAttention::MlaAttention(const ModelConfig& cfg, MlaWeights w, const Rope& rope)
    : cfg_(cfg), w_(std::move(w)), rope_(rope) {
  H_ = cfg.num_attention_heads;
  nope_ = cfg.qk_nope_head_dim;
  rope_dim_ = cfg.qk_rope_head_dim;
  v_ = cfg.v_head_dim;
  r_ = cfg.kv_lora_rank;
  scale_ = float(cfg.attn_scale());
  abs_ = MlaAbsorbedWeights::from(*w_.kv_b, H_, nope_, v_, w_.kv_b->layout == cpu::Layout::Packed16);
  for (int64_t h = 0; h < H_; ++h) {
    uk_heads_.push_back(MlaAbsorbedWeights::head(abs_.uk_t, h, r_));
    uv_heads_.push_back(MlaAbsorbedWeights::head(abs_.uv, h, v_));
  }
}

size_t MlaAttention::active_bytes() const {
  auto b = [](const cpu::WeightView* w) { return w ? w->bytes() : 0; };
  // Decoding reads kv_b through its absorbed halves.
  return b(w_.q_a) + b(w_.q_b) + b(w_.q) + b(w_.kv_a) + b(&abs_.uk_t) + b(&abs_.uv) + b(w_.o);
}

void MlaAttention::forward(const float* h, float* out, const LayerCtx& ctx) {
  const int64_t R = ctx.batch->rows, qk = nope_ + rope_dim_, W = r_ + rope_dim_;
  ThreadPool& pool = *ctx.pool;
  Scratch& s = *ctx.scratch;

  float* q = s.get(kQ, size_t(R * H_ * qk));  // [R, H, nope + rope]
  float* kv = s.get(kKv, size_t(R * W));       // [R, kv_lora + rope]
  // The products of h go to the pool as one batch (one parallel section, not two).
  float* qa = w_.q_a ? s.get(kQa, size_t(R * w_.q_a->rows)) : nullptr;  // [R, q_lora]
  tasks_.clear();
  tasks_.push_back({w_.q_a ? w_.q_a : w_.q, h, R, w_.q_a ? qa : q});
  tasks_.push_back({w_.kv_a, h, R, kv});
  cpu::matmul_many(tasks_.data(), tasks_.size(), pool);
  if (w_.q_a) {
    ops::rmsnorm(qa, w_.q_a_norm->data(), qa, R, w_.q_a->rows, cfg_.rms_norm_eps);
    linear(*w_.q_b, qa, R, q, pool);
  }

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
  Scratch& s = *ctx.scratch;
  ThreadPool& pool = *ctx.pool;
  // q_lat = W_UKᵀ q_nope, per head, as one batch of products.
  float* qn = s.get(kQn, size_t(H_ * R * nope_));  // [H, R, nope]
  float* qlat = s.get(kQlat, size_t(H_ * R * r_));  // [H, R, r]
  float* ql = s.get(kQl, size_t(H_ * R * W));       // [H, R, r + rope]: q_lat then q_pe
  for (int64_t i = 0; i < R; ++i)
    for (int64_t h = 0; h < H_; ++h) std::memcpy(qn + (h * R + i) * nope_, q + (i * H_ + h) * qk, size_t(nope_) * 4);
  tasks_.clear();
  for (int64_t h = 0; h < H_; ++h) tasks_.push_back({&uk_heads_[size_t(h)], qn + h * R * nope_, R, qlat + h * R * r_});
  cpu::matmul_many(tasks_.data(), tasks_.size(), pool);
  for (int64_t h = 0; h < H_; ++h)
    for (int64_t i = 0; i < R; ++i) {
      float* dst = ql + (h * R + i) * W;
      std::memcpy(dst, qlat + (h * R + i) * r_, size_t(r_) * 4);
      std::memcpy(dst + r_, q + (i * H_ + h) * qk + nope_, size_t(rope_dim_) * 4);
    }

  // Attention in the latent space: the cache row [c | k_pe] is scored against [q_lat | q_pe].
  // Fewer rows than threads (decode): each row is split across the pool (attend_row_split).
  // Otherwise units of (row, group of heads) go to whichever thread is free (rows of a prefill
  // chunk see different context lengths); a unit scores all its heads against each cache row
  // at once. Neither changes any bit: each (row, head) is computed the same way wherever it runs.
  const int64_t max_ctx = ctx.cache->max_ctx();
  float* c_all = s.get(kCtx, size_t(H_ * R * r_));  // [H, R, r] Σ p·c per row and head
  if (R < pool.size() && pool.size() > 1) {
    for (int64_t i = 0; i < R; ++i) attend_row_split(ql, i, c_all, ctx);
  } else {
    const int64_t groups = R >= 2 * pool.size() ? 1 : std::min<int64_t>(H_, 2 * pool.size());
    const int64_t hg = (H_ + groups - 1) / groups;  // heads per unit
    float* tbuf = s.get(kThread, size_t(hg * max_ctx) * size_t(pool.size()));  // [threads, hg, max_ctx]
    std::atomic<int64_t> next{0};
    auto units = [&](int t) {
      float* sc = tbuf + hg * max_ctx * t;  // [hg, max_ctx]
      for (int64_t u = next.fetch_add(1); u < R * groups; u = next.fetch_add(1)) {
        const int64_t i = u / groups, h0 = (u % groups) * hg, nh = std::min(hg, H_ - h0);
        if (nh <= 0) continue;
        const int64_t P = ctx.batch->pos[i] + 1;
        const cpu::LatentCache cache{DType::F32, ctx.cache->at(ctx.layer, ctx.batch->slot[i], 0), W};
        cpu::latent_scores_heads(ql + (h0 * R + i) * W, R * W, nh, cache, P, W, sc, max_ctx);
        for (int64_t h = 0; h < nh; ++h) scaled_softmax(sc + h * max_ctx, P);
        cpu::latent_weighted_sum_heads(sc, max_ctx, nh, cache, P, r_, c_all + (h0 * R + i) * r_, R * r_);
      }
    };
    if (R * groups > 1) pool.run_all(units);
    else units(0);
  }
  // o_h = W_UV_h · c_h, per head, then [H, R, v] → [R, H*v].
  float* oh = s.get(kOh, size_t(H_ * R * v_));  // [H, R, v]
  tasks_.clear();
  for (int64_t h = 0; h < H_; ++h) tasks_.push_back({&uv_heads_[size_t(h)], c_all + h * R * r_, R, oh + h * R * v_});
  cpu::matmul_many(tasks_.data(), tasks_.size(), pool);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t h = 0; h < H_; ++h) std::memcpy(o + (i * H_ + h) * v_, oh + (h * R + i) * v_, size_t(v_) * 4);
}

// One head's latent scores → attention weights; both absorbed paths go through here, so they
// give the same bits.
void MlaAttention::scaled_softmax(float* s, int64_t P) const {
  for (int64_t t = 0; t < P; ++t) s[t] *= scale_;
  ops::softmax(s, P);
}

// One row (a decode step) across the pool: the threads score disjoint ranges of cache rows
// for every head, then softmax disjoint heads, then sum disjoint ranges of latent columns.
// Each thread reads its part of the cache once per pass; with units of heads every unit read
// the whole cache twice. Same bits as the units: each (head, row) score, each head's softmax
// and each column's sum is computed the same way wherever it runs (vec.h).
void MlaAttention::attend_row_split(const float* ql, int64_t i, float* c_all, const LayerCtx& ctx) {
  const int64_t R = ctx.batch->rows, W = r_ + rope_dim_, max_ctx = ctx.cache->max_ctx();
  ThreadPool& pool = *ctx.pool;
  const int64_t P = ctx.batch->pos[i] + 1;
  const float* base = ctx.cache->at(ctx.layer, ctx.batch->slot[i], 0);  // [P, W] rows of [c | k_pe]
  float* sc = ctx.scratch->get(kScores, size_t(H_ * max_ctx));           // [H, max_ctx]
  const float* q = ql + i * W;                                           // head h at q + h·R·W
  pool.parallel_for(P, 64, [&](int64_t t0, int64_t t1, int) {
    const cpu::LatentCache rows{DType::F32, base + t0 * W, W};
    cpu::latent_scores_heads(q, R * W, H_, rows, t1 - t0, W, sc + t0, max_ctx);
  });
  pool.parallel_for(H_, 1, [&](int64_t h0, int64_t h1, int) {
    for (int64_t h = h0; h < h1; ++h) scaled_softmax(sc + h * max_ctx, P);
  });
  // Column ranges start at multiples of 64, where every kernel's column blocking restarts.
  pool.parallel_for((r_ + 63) / 64, 1, [&](int64_t b0, int64_t b1, int) {
    const int64_t c0 = b0 * 64, c1 = std::min(r_, b1 * 64);
    const cpu::LatentCache cols{DType::F32, base + c0, W};
    cpu::latent_weighted_sum_heads(sc, max_ctx, H_, cols, P, c1 - c0, c_all + i * r_ + c0, R * r_);
  });
}

void MlaAttention::attend_naive(const float* q, float* o, const LayerCtx& ctx) {
  const int64_t R = ctx.batch->rows, qk = nope_ + rope_dim_, KV = nope_ + v_;
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
