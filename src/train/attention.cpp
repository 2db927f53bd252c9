#include "train/attention.h"

#include <algorithm>

#include "core/error.h"
#include "train/blas.h"

namespace fathom::train {

namespace {

// The gradient buffer of a trainable parameter (sized on first use), or null.
float* grad(Param* p) {
  if (!p || !p->trainable) return nullptr;
  if (p->g.size() != size_t(p->numel())) p->g.assign(size_t(p->numel()), 0.f);
  return p->g.data();
}

void check_shape(const Param* p, std::initializer_list<int64_t> shape, const char* what) {
  FATHOM_CHECK(p != nullptr, "train attention: {} is missing", what);
  FATHOM_CHECK(p->shape == std::vector<int64_t>(shape), "train attention: {} ({}) has the wrong shape", what,
               p->name);
}

// y[rows, n] += bias[n]
void add_bias(float* y, const Param* bias, int64_t rows, int64_t n) {
  if (!bias) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) y[r * n + i] += bias->w[size_t(i)];
}

// dbias[n] += Σ_r dy[r, n]
void bias_bwd(const float* dy, Param* bias, int64_t rows, int64_t n) {
  float* g = grad(bias);
  if (!g) return;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i) g[i] += dy[r * n + i];
}

void check_rope(const RopeTable* rope, int64_t dim) {
  FATHOM_CHECK(rope != nullptr && rope->dim == dim, "train attention: the rope table must rotate {} dims", dim);
}

}  // namespace

// ---- MLA

TrainMla::TrainMla(const ModelConfig& cfg, MlaParams p, const RopeTable* rope) : cfg_(cfg), p_(p), rope_(rope) {
  const int64_t D = cfg.hidden_size, H = cfg.num_attention_heads, qk = cfg.qk_head_dim();
  const int64_t r = cfg.kv_lora_rank, rd = cfg.qk_rope_head_dim, ql = cfg.q_lora_rank;
  if (ql > 0) {
    check_shape(p.q_a, {ql, D}, "q_a_proj");
    check_shape(p.q_a_norm, {ql}, "q_a_layernorm");
    check_shape(p.q_b, {H * qk, ql}, "q_b_proj");
  } else {
    check_shape(p.q, {H * qk, D}, "q_proj");
  }
  check_shape(p.kv_a, {r + rd, D}, "kv_a_proj_with_mqa");
  check_shape(p.kv_a_norm, {r}, "kv_a_layernorm");
  check_shape(p.kv_b, {H * (cfg.qk_nope_head_dim + cfg.v_head_dim), r}, "kv_b_proj");
  check_shape(p.o, {D, H * cfg.v_head_dim}, "o_proj");
  check_rope(rope, rd);
}

void TrainMla::forward(const Seqs& s, const float* x, float* y, MlaSaved& sv, const Compute& cx) const {
  ThreadPool* pool = cx.pool;
  const int64_t R = s.rows(), D = cfg_.hidden_size, H = cfg_.num_attention_heads;
  const int64_t nope = cfg_.qk_nope_head_dim, rd = cfg_.qk_rope_head_dim, qk = nope + rd, vd = cfg_.v_head_dim;
  const int64_t r = cfg_.kv_lora_rank, W = r + rd, ql = cfg_.q_lora_rank, KV = nope + vd;
  const float eps = float(cfg_.rms_norm_eps);

  sv.q.resize(size_t(R * H * qk));
  if (ql > 0) {
    sv.q_a.resize(size_t(R * ql));
    sv.q_a_rstd.resize(size_t(R));
    sv.q_a_n.resize(size_t(R * ql));
    linear_fwd(cx, x, p_.q_a->w.data(), sv.q_a.data(), R, D, ql);
    rmsnorm_fwd(sv.q_a.data(), ql, p_.q_a_norm->w.data(), sv.q_a_n.data(), ql, sv.q_a_rstd.data(), R, ql, eps, pool);
    linear_fwd(cx, sv.q_a_n.data(), p_.q_b->w.data(), sv.q.data(), R, ql, H * qk);
  } else {
    linear_fwd(cx, x, p_.q->w.data(), sv.q.data(), R, D, H * qk);
  }
  rope_fwd(*rope_, s, sv.q.data(), H * qk, H, qk, nope);

  sv.kv_a.resize(size_t(R * W));
  sv.kv_rstd.resize(size_t(R));
  sv.kv_n.resize(size_t(R * r));
  linear_fwd(cx, x, p_.kv_a->w.data(), sv.kv_a.data(), R, D, W);
  rmsnorm_fwd(sv.kv_a.data(), W, p_.kv_a_norm->w.data(), sv.kv_n.data(), r, sv.kv_rstd.data(), R, r, eps, pool);
  std::vector<float> kv(size_t(R * H * KV));  // [R, H, nope + v]
  linear_fwd(cx, sv.kv_n.data(), p_.kv_b->w.data(), kv.data(), R, r, H * KV);

  // k per head = [k_nope | roped k_pe], the one k_pe shared by every head.
  sv.k.resize(size_t(R * H * qk));
  sv.v.resize(size_t(R * H * vd));
  std::vector<float> kpe(size_t(R * rd));  // [R, rope]
  for (int64_t i = 0; i < R; ++i) std::copy_n(sv.kv_a.data() + i * W + r, rd, kpe.data() + i * rd);
  rope_fwd(*rope_, s, kpe.data(), rd, 1, rd, 0);
  for (int64_t i = 0; i < R; ++i)
    for (int64_t h = 0; h < H; ++h) {
      const float* src = kv.data() + (i * H + h) * KV;
      float* kd = sv.k.data() + (i * H + h) * qk;
      std::copy_n(src, nope, kd);
      std::copy_n(kpe.data() + i * rd, rd, kd + nope);
      std::copy_n(src + nope, vd, sv.v.data() + (i * H + h) * vd);
    }

  sv.probs.resize(size_t(s.B * H * s.T * s.T));
  sv.attn.resize(size_t(R * H * vd));
  const AttnDims ad{H, H, qk, vd, float(cfg_.attn_scale())};
  attention_fwd(s, ad, sv.q.data(), sv.k.data(), sv.v.data(), sv.attn.data(), sv.probs.data(), pool);
  linear_fwd(cx, sv.attn.data(), p_.o->w.data(), y, R, H * vd, D);
}

void TrainMla::backward(const Seqs& s, const MlaSaved& sv, const float* x, const float* dy, float* dx,
                        const Compute& cx) const {
  ThreadPool* pool = cx.pool;
  const int64_t R = s.rows(), D = cfg_.hidden_size, H = cfg_.num_attention_heads;
  const int64_t nope = cfg_.qk_nope_head_dim, rd = cfg_.qk_rope_head_dim, qk = nope + rd, vd = cfg_.v_head_dim;
  const int64_t r = cfg_.kv_lora_rank, W = r + rd, ql = cfg_.q_lora_rank, KV = nope + vd;

  std::vector<float> dattn(size_t(R * H * vd));  // [R, H, v]
  linear_bwd(cx, dy, sv.attn.data(), p_.o->w.data(), dattn.data(), grad(p_.o), R, H * vd, D);

  std::vector<float> dq(size_t(R * H * qk)), dk(size_t(R * H * qk)), dv(size_t(R * H * vd));
  const AttnDims ad{H, H, qk, vd, float(cfg_.attn_scale())};
  attention_bwd(s, ad, sv.q.data(), sv.k.data(), sv.v.data(), sv.probs.data(), dattn.data(), dq.data(), dk.data(),
                dv.data(), pool);

  // Back to the latent: dkv [R, H, nope + v] from the heads, and the shared k_pe's gradient
  // summed over heads and un-rotated into dkv_a's rope columns.
  std::vector<float> dkv(size_t(R * H * KV)), dkv_a(size_t(R * W), 0.f);  // [R, H, nope + v], [R, kv_lora + rope]
  for (int64_t i = 0; i < R; ++i) {
    float* dpe = dkv_a.data() + i * W + r;
    for (int64_t h = 0; h < H; ++h) {
      const float* dkh = dk.data() + (i * H + h) * qk;
      float* dst = dkv.data() + (i * H + h) * KV;
      std::copy_n(dkh, nope, dst);
      std::copy_n(dv.data() + (i * H + h) * vd, vd, dst + nope);
      for (int64_t j = 0; j < rd; ++j) dpe[j] += dkh[nope + j];
    }
  }
  rope_bwd(*rope_, s, dkv_a.data(), W, 1, rd, r);
  std::vector<float> dkv_n(size_t(R * r), 0.f);  // [R, kv_lora]
  linear_bwd(cx, dkv.data(), sv.kv_n.data(), p_.kv_b->w.data(), dkv_n.data(), grad(p_.kv_b), R, r, H * KV);
  rmsnorm_bwd(dkv_n.data(), r, sv.kv_a.data(), W, p_.kv_a_norm->w.data(), sv.kv_rstd.data(), dkv_a.data(), W,
              grad(p_.kv_a_norm), R, r, pool);
  linear_bwd(cx, dkv_a.data(), x, p_.kv_a->w.data(), dx, grad(p_.kv_a), R, D, W);

  rope_bwd(*rope_, s, dq.data(), H * qk, H, qk, nope);
  if (ql > 0) {
    std::vector<float> dqn(size_t(R * ql), 0.f), dqa(size_t(R * ql), 0.f);  // [R, q_lora] ×2
    linear_bwd(cx, dq.data(), sv.q_a_n.data(), p_.q_b->w.data(), dqn.data(), grad(p_.q_b), R, ql, H * qk);
    rmsnorm_bwd(dqn.data(), ql, sv.q_a.data(), ql, p_.q_a_norm->w.data(), sv.q_a_rstd.data(), dqa.data(), ql,
                grad(p_.q_a_norm), R, ql, pool);
    linear_bwd(cx, dqa.data(), x, p_.q_a->w.data(), dx, grad(p_.q_a), R, D, ql);
  } else {
    linear_bwd(cx, dq.data(), x, p_.q->w.data(), dx, grad(p_.q), R, D, H * qk);
  }
}

// ---- GQA

TrainGqa::TrainGqa(const ModelConfig& cfg, GqaParams p, const RopeTable* rope) : cfg_(cfg), p_(p), rope_(rope) {
  const int64_t D = cfg.hidden_size, H = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, hd = cfg.head_dim;
  FATHOM_CHECK(Hkv > 0 && H % Hkv == 0, "train attention: {} heads are not groups of {} kv heads", H, Hkv);
  check_shape(p.q, {H * hd, D}, "q_proj");
  check_shape(p.k, {Hkv * hd, D}, "k_proj");
  check_shape(p.v, {Hkv * hd, D}, "v_proj");
  check_shape(p.o, {D, H * hd}, "o_proj");
  if (p.q_bias) check_shape(p.q_bias, {H * hd}, "q_proj.bias");
  if (p.k_bias) check_shape(p.k_bias, {Hkv * hd}, "k_proj.bias");
  if (p.v_bias) check_shape(p.v_bias, {Hkv * hd}, "v_proj.bias");
  if (p.o_bias) check_shape(p.o_bias, {D}, "o_proj.bias");
  check_rope(rope, hd);
}

void TrainGqa::forward(const Seqs& s, const float* x, float* y, GqaSaved& sv, const Compute& cx) const {
  ThreadPool* pool = cx.pool;
  const int64_t R = s.rows(), D = cfg_.hidden_size, H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
  const int64_t hd = cfg_.head_dim;
  sv.q.resize(size_t(R * H * hd));
  sv.k.resize(size_t(R * Hkv * hd));
  sv.v.resize(size_t(R * Hkv * hd));
  linear_fwd(cx, x, p_.q->w.data(), sv.q.data(), R, D, H * hd);
  linear_fwd(cx, x, p_.k->w.data(), sv.k.data(), R, D, Hkv * hd);
  linear_fwd(cx, x, p_.v->w.data(), sv.v.data(), R, D, Hkv * hd);
  add_bias(sv.q.data(), p_.q_bias, R, H * hd);
  add_bias(sv.k.data(), p_.k_bias, R, Hkv * hd);
  add_bias(sv.v.data(), p_.v_bias, R, Hkv * hd);
  rope_fwd(*rope_, s, sv.q.data(), H * hd, H, hd, 0);
  rope_fwd(*rope_, s, sv.k.data(), Hkv * hd, Hkv, hd, 0);

  sv.probs.resize(size_t(s.B * H * s.T * s.T));
  sv.attn.resize(size_t(R * H * hd));
  const AttnDims ad{H, Hkv, hd, hd, float(cfg_.attn_scale())};
  attention_fwd(s, ad, sv.q.data(), sv.k.data(), sv.v.data(), sv.attn.data(), sv.probs.data(), pool);
  linear_fwd(cx, sv.attn.data(), p_.o->w.data(), y, R, H * hd, D);
  add_bias(y, p_.o_bias, R, D);
}

void TrainGqa::backward(const Seqs& s, const GqaSaved& sv, const float* x, const float* dy, float* dx,
                        const Compute& cx) const {
  ThreadPool* pool = cx.pool;
  const int64_t R = s.rows(), D = cfg_.hidden_size, H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
  const int64_t hd = cfg_.head_dim;
  bias_bwd(dy, p_.o_bias, R, D);
  std::vector<float> dattn(size_t(R * H * hd));  // [R, H, hd]
  linear_bwd(cx, dy, sv.attn.data(), p_.o->w.data(), dattn.data(), grad(p_.o), R, H * hd, D);

  std::vector<float> dq(size_t(R * H * hd)), dk(size_t(R * Hkv * hd)), dv(size_t(R * Hkv * hd));
  const AttnDims ad{H, Hkv, hd, hd, float(cfg_.attn_scale())};
  attention_bwd(s, ad, sv.q.data(), sv.k.data(), sv.v.data(), sv.probs.data(), dattn.data(), dq.data(), dk.data(),
                dv.data(), pool);
  rope_bwd(*rope_, s, dq.data(), H * hd, H, hd, 0);
  rope_bwd(*rope_, s, dk.data(), Hkv * hd, Hkv, hd, 0);
  bias_bwd(dq.data(), p_.q_bias, R, H * hd);
  bias_bwd(dk.data(), p_.k_bias, R, Hkv * hd);
  bias_bwd(dv.data(), p_.v_bias, R, Hkv * hd);
  linear_bwd(cx, dq.data(), x, p_.q->w.data(), dx, grad(p_.q), R, D, H * hd);
  linear_bwd(cx, dk.data(), x, p_.k->w.data(), dx, grad(p_.k), R, D, Hkv * hd);
  linear_bwd(cx, dv.data(), x, p_.v->w.data(), dx, grad(p_.v), R, D, Hkv * hd);
}

}  // namespace fathom::train
