// TrainMla and TrainGqa against a double-precision reference of the layer written here from
// the formulas (forward), and every parameter's gradient and dx against central differences
// of L = Σ dy·y through that reference (backward).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"
#include "layers/rope.h"
#include "ref.h"
#include "train/attention.h"

namespace fathom::train {
namespace {

using ref::Vec;

ModelConfig fixture_config(const char* name) { return ModelConfig::load(std::string(FATHOM_TEST_DATA) + "/fixtures/" + name); }

// A parameter with random weights and a gradient prefilled with 0.25 (backward must add).
Param make_param(const std::string& name, std::vector<int64_t> shape, uint64_t seed, bool norm = false) {
  Param p;
  p.name = name;
  p.shape = std::move(shape);
  const float a = norm ? 0.5f : std::sqrt(3.0f / float(p.cols()));  // unit-variance outputs
  p.w = norm ? ref::rand_f(size_t(p.numel()), seed, 0.5f, 1.5f) : ref::rand_f(size_t(p.numel()), seed, -a, a);
  p.g.assign(size_t(p.numel()), 0.25f);
  return p;
}

std::vector<float> grad_of(const Param& p) {
  std::vector<float> g = p.g;
  for (float& x : g) x -= 0.25f;
  return g;
}

void expect_close(const std::vector<float>& got, const Vec& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double mx = 0;
  for (double v : want) mx = std::max(mx, std::fabs(v));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * mx) << what << " at " << i;
}

// ---- MLA

struct MlaRef {
  const ModelConfig& cfg;
  const Rope& rp;
  Seqs s;
  Vec x, q_a, q_a_norm, q_b, q, kv_a, kv_a_norm, kv_b, o;  // double copies, perturbed by the checks

  // y [R, D] with the layer's formulas in double.
  Vec forward() const {
    const int64_t R = s.rows(), D = cfg.hidden_size, H = cfg.num_attention_heads, nope = cfg.qk_nope_head_dim;
    const int64_t rd = cfg.qk_rope_head_dim, qk = nope + rd, vd = cfg.v_head_dim, r = cfg.kv_lora_rank;
    const int64_t W = r + rd, ql = cfg.q_lora_rank, KV = nope + vd;
    const double eps = cfg.rms_norm_eps;
    const bool il = cfg.rope_interleave;
    Vec qf = ql > 0 ? ref::linear(ref::rmsnorm(ref::linear(x, q_a, R, D, ql), ql, 0, q_a_norm, R, ql, eps), q_b, R,
                                  ql, H * qk)
                    : ref::linear(x, q, R, D, H * qk);
    ref::rope(qf, R, s.T, H * qk, H, qk, nope, rp, rd, il);
    const Vec kva = ref::linear(x, kv_a, R, D, W);
    const Vec kv = ref::linear(ref::rmsnorm(kva, W, 0, kv_a_norm, R, r, eps), kv_b, R, r, H * KV);
    Vec kpe(size_t(R * rd));
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < rd; ++j) kpe[size_t(i * rd + j)] = kva[size_t(i * W + r + j)];
    ref::rope(kpe, R, s.T, rd, 1, rd, 0, rp, rd, il);
    Vec k(size_t(R * H * qk)), v(size_t(R * H * vd));
    for (int64_t i = 0; i < R; ++i)
      for (int64_t h = 0; h < H; ++h) {
        for (int64_t j = 0; j < nope; ++j) k[size_t((i * H + h) * qk + j)] = kv[size_t((i * H + h) * KV + j)];
        for (int64_t j = 0; j < rd; ++j) k[size_t((i * H + h) * qk + nope + j)] = kpe[size_t(i * rd + j)];
        for (int64_t j = 0; j < vd; ++j) v[size_t((i * H + h) * vd + j)] = kv[size_t((i * H + h) * KV + nope + j)];
      }
    const Vec at = ref::attention(qf, k, v, s.B, s.T, H, H, qk, vd, cfg.attn_scale());
    return ref::linear(at, o, R, H * vd, D);
  }
};

void check_mla(const char* fixture, ThreadPool* pool) {
  SCOPED_TRACE(fixture);
  const ModelConfig cfg = fixture_config(fixture);
  const Seqs s{2, 7};
  const int64_t R = s.rows(), D = cfg.hidden_size, H = cfg.num_attention_heads, qk = cfg.qk_head_dim();
  const int64_t r = cfg.kv_lora_rank, rd = cfg.qk_rope_head_dim, ql = cfg.q_lora_rank, vd = cfg.v_head_dim;
  const RopeTable rt = make_rope_table(cfg, rd, cfg.rope_interleave, s.T);
  const Rope rp(cfg, rd, cfg.rope_interleave);

  Param q_a, q_a_norm, q_b, q;
  if (ql > 0) {
    q_a = make_param("q_a_proj.weight", {ql, D}, 101);
    q_a_norm = make_param("q_a_layernorm.weight", {ql}, 102, true);
    q_b = make_param("q_b_proj.weight", {H * qk, ql}, 103);
  } else {
    q = make_param("q_proj.weight", {H * qk, D}, 104);
  }
  Param kv_a = make_param("kv_a_proj_with_mqa.weight", {r + rd, D}, 105);
  Param kv_a_norm = make_param("kv_a_layernorm.weight", {r}, 106, true);
  Param kv_b = make_param("kv_b_proj.weight", {H * (cfg.qk_nope_head_dim + vd), r}, 107);
  Param o = make_param("o_proj.weight", {D, H * vd}, 108);
  MlaParams mp;
  if (ql > 0) {
    mp.q_a = &q_a;
    mp.q_a_norm = &q_a_norm;
    mp.q_b = &q_b;
  } else {
    mp.q = &q;
  }
  mp.kv_a = &kv_a;
  mp.kv_a_norm = &kv_a_norm;
  mp.kv_b = &kv_b;
  mp.o = &o;
  const TrainMla layer(cfg, mp, &rt);

  auto x = ref::rand_f(size_t(R * D), 109), dy = ref::rand_f(size_t(R * D), 110);
  std::vector<float> y(size_t(R * D), 9.f), dx(size_t(R * D), 0.5f);
  MlaSaved sv;
  layer.forward(s, x.data(), y.data(), sv, pool);
  MlaRef rf{cfg, rp, s, ref::to_d(x), ref::to_d(q_a.w), ref::to_d(q_a_norm.w), ref::to_d(q_b.w), ref::to_d(q.w),
            ref::to_d(kv_a.w), ref::to_d(kv_a_norm.w), ref::to_d(kv_b.w), ref::to_d(o.w)};
  // fp32 against double: a few 1e-7 relative per op, a handful of ops deep.
  expect_close(y, rf.forward(), 2e-5, "y");
  EXPECT_EQ(sv.probs.size(), size_t(s.B * H * s.T * s.T));
  EXPECT_EQ(sv.k.size(), size_t(R * H * qk));
  EXPECT_EQ(sv.attn.size(), size_t(R * H * vd));

  layer.backward(s, sv, x.data(), dy.data(), dx.data(), pool);
  auto L = [&] { return ref::dot(rf.forward(), dy); };
  std::vector<float> gx = dx;
  for (float& v : gx) v -= 0.5f;
  ref::check_grad("dx", rf.x, gx, L, 111);
  if (ql > 0) {
    ref::check_grad("q_a_proj", rf.q_a, grad_of(q_a), L, 112);
    ref::check_grad("q_a_layernorm", rf.q_a_norm, grad_of(q_a_norm), L, 113);
    ref::check_grad("q_b_proj", rf.q_b, grad_of(q_b), L, 114);
  } else {
    ref::check_grad("q_proj", rf.q, grad_of(q), L, 115);
  }
  ref::check_grad("kv_a_proj_with_mqa", rf.kv_a, grad_of(kv_a), L, 116);
  ref::check_grad("kv_a_layernorm", rf.kv_a_norm, grad_of(kv_a_norm), L, 117);
  ref::check_grad("kv_b_proj", rf.kv_b, grad_of(kv_b), L, 118);
  ref::check_grad("o_proj", rf.o, grad_of(o), L, 119);
}

// q_lora_rank 48; YaRN factor 4 with mscale = mscale_all_dim = 1.
TEST(TrainAttention, MlaWithQLoraYarnMatchesReferenceAndGradients) {
  ThreadPool pool(2);
  check_mla("tiny-deepseek-v3", &pool);
}

// One q_proj; YaRN factor 40 with mscale 0.707 folded into the softmax scale.
TEST(TrainAttention, MlaWithoutQLoraYarnMatchesReferenceAndGradients) { check_mla("tiny-deepseek-v2-lite", nullptr); }

// ---- GQA

struct GqaRef {
  const ModelConfig& cfg;
  const Rope& rp;
  Seqs s;
  bool bias;
  Vec x, q, k, v, o, qb, kb, vb, ob;

  Vec forward() const {
    const int64_t R = s.rows(), D = cfg.hidden_size, H = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads;
    const int64_t hd = cfg.head_dim;
    Vec qf = ref::linear(x, q, R, D, H * hd, bias ? &qb : nullptr);
    Vec kf = ref::linear(x, k, R, D, Hkv * hd, bias ? &kb : nullptr);
    const Vec vf = ref::linear(x, v, R, D, Hkv * hd, bias ? &vb : nullptr);
    ref::rope(qf, R, s.T, H * hd, H, hd, 0, rp, hd, false);
    ref::rope(kf, R, s.T, Hkv * hd, Hkv, hd, 0, rp, hd, false);
    const Vec at = ref::attention(qf, kf, vf, s.B, s.T, H, Hkv, hd, hd, cfg.attn_scale());
    return ref::linear(at, o, R, H * hd, D, bias ? &ob : nullptr);
  }
};

void check_gqa(const char* fixture, bool bias, ThreadPool* pool) {
  SCOPED_TRACE(fixture);
  const ModelConfig cfg = fixture_config(fixture);
  const Seqs s{2, 6};
  const int64_t R = s.rows(), D = cfg.hidden_size, H = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads;
  const int64_t hd = cfg.head_dim;
  ASSERT_LT(Hkv, H);
  const RopeTable rt = make_rope_table(cfg, hd, false, s.T);
  const Rope rp(cfg, hd, false);
  Param q = make_param("q_proj.weight", {H * hd, D}, 201), k = make_param("k_proj.weight", {Hkv * hd, D}, 202);
  Param v = make_param("v_proj.weight", {Hkv * hd, D}, 203), o = make_param("o_proj.weight", {D, H * hd}, 204);
  Param qb = make_param("q_proj.bias", {H * hd}, 205, true), kb = make_param("k_proj.bias", {Hkv * hd}, 206, true);
  Param vb = make_param("v_proj.bias", {Hkv * hd}, 207, true), ob = make_param("o_proj.bias", {D}, 208, true);
  GqaParams gp{&q, &k, &v, &o};
  if (bias) {
    gp.q_bias = &qb;
    gp.k_bias = &kb;
    gp.v_bias = &vb;
    gp.o_bias = &ob;
  }
  const TrainGqa layer(cfg, gp, &rt);

  auto x = ref::rand_f(size_t(R * D), 209), dy = ref::rand_f(size_t(R * D), 210);
  std::vector<float> y(size_t(R * D), 9.f), dx(size_t(R * D), 0.5f);
  GqaSaved sv;
  layer.forward(s, x.data(), y.data(), sv, pool);
  GqaRef rf{cfg, rp, s, bias, ref::to_d(x), ref::to_d(q.w), ref::to_d(k.w), ref::to_d(v.w), ref::to_d(o.w),
            ref::to_d(qb.w), ref::to_d(kb.w), ref::to_d(vb.w), ref::to_d(ob.w)};
  expect_close(y, rf.forward(), 2e-5, "y");
  EXPECT_EQ(sv.k.size(), size_t(R * Hkv * hd));

  layer.backward(s, sv, x.data(), dy.data(), dx.data(), pool);
  auto L = [&] { return ref::dot(rf.forward(), dy); };
  std::vector<float> gx = dx;
  for (float& e : gx) e -= 0.5f;
  ref::check_grad("dx", rf.x, gx, L, 211);
  ref::check_grad("q_proj", rf.q, grad_of(q), L, 212);
  ref::check_grad("k_proj", rf.k, grad_of(k), L, 213);
  ref::check_grad("v_proj", rf.v, grad_of(v), L, 214);
  ref::check_grad("o_proj", rf.o, grad_of(o), L, 215);
  if (bias) {
    ref::check_grad("q_proj.bias", rf.qb, grad_of(qb), L, 216);
    ref::check_grad("k_proj.bias", rf.kb, grad_of(kb), L, 217);
    ref::check_grad("v_proj.bias", rf.vb, grad_of(vb), L, 218);
    ref::check_grad("o_proj.bias", rf.ob, grad_of(ob), L, 219);
  } else {
    for (const Param* p : {&qb, &kb, &vb, &ob})
      for (float g : p->g) ASSERT_EQ(g, 0.25f) << p->name << " is not in use";
  }
}

// Qwen2: H 4 over Hkv 2, q/k/v biases (and an o bias as Llama's attention_bias has).
TEST(TrainAttention, GqaWithBiasesMatchesReferenceAndGradients) {
  ThreadPool pool(2);
  check_gqa("tiny-qwen2", true, &pool);
}

// Llama 3: H 4 over one K/V head, llama3 rope scaling, no biases.
TEST(TrainAttention, GqaLlama3MatchesReferenceAndGradients) { check_gqa("tiny-llama3", false, nullptr); }

}  // namespace
}  // namespace fathom::train
