// The training ops against plain double-precision loops (forward) and central differences of
// those loops (backward): rmsnorm, rope (both layouts; YaRN and llama3 tables), swiglu,
// embedding, causal GQA attention and cross-entropy.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"
#include "layers/rope.h"
#include "ref.h"
#include "train/ops.h"

namespace fathom::train {
namespace {

using ref::Vec;

ModelConfig fixture_config(const char* name) { return ModelConfig::load(std::string(FATHOM_TEST_DATA) + "/fixtures/" + name); }

// A Qwen2-shaped config with the given rope_scaling (the other fields only need to parse).
ModelConfig qwen_config(const nlohmann::json& rope_scaling) {
  nlohmann::json j = {{"model_type", "qwen2"},       {"vocab_size", 32},          {"hidden_size", 32},
                      {"intermediate_size", 64},     {"num_hidden_layers", 1},    {"num_attention_heads", 2},
                      {"num_key_value_heads", 1},    {"max_position_embeddings", 256},
                      {"rope_theta", 10000.0},       {"rope_scaling", rope_scaling}};
  return ModelConfig::from_json(j);
}

// Subtracts a constant the backward was expected to add onto.
std::vector<float> minus(std::vector<float> v, float c) {
  for (float& x : v) x -= c;
  return v;
}

TEST(TrainOps, RmsNormMatchesReferenceAndGradients) {
  const int64_t R = 5, dim = 24, ldx = 30, ldy = 28, lddx = 27;
  const float eps = 1e-5f;
  auto x = ref::rand_f(size_t(R * ldx), 1, -2.f, 2.f), w = ref::rand_f(size_t(dim), 2, 0.5f, 1.5f);
  auto dy = ref::rand_f(size_t(R * ldy), 3);
  std::vector<float> y(size_t(R * ldy), 7.f), rstd(size_t(R), 0.f);
  rmsnorm_fwd(x.data(), ldx, w.data(), y.data(), ldy, rstd.data(), R, dim, eps);
  Vec xd = ref::to_d(x), wd = ref::to_d(w);
  const Vec yr = ref::rmsnorm(xd, ldx, 0, wd, R, dim, eps);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t i = 0; i < dim; ++i) EXPECT_NEAR(y[size_t(r * ldy + i)], yr[size_t(r * dim + i)], 1e-5);
    for (int64_t i = dim; i < ldy; ++i) EXPECT_EQ(y[size_t(r * ldy + i)], 7.f) << "wrote past dim";
  }

  std::vector<float> dx(size_t(R * lddx), 0.5f), dw(size_t(dim), -0.25f);
  rmsnorm_bwd(dy.data(), ldy, x.data(), ldx, w.data(), rstd.data(), dx.data(), lddx, dw.data(), R, dim);
  auto L = [&] {
    const Vec yy = ref::rmsnorm(xd, ldx, 0, wd, R, dim, eps);
    double s = 0;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t i = 0; i < dim; ++i) s += yy[size_t(r * dim + i)] * dy[size_t(r * ldy + i)];
    return s;
  };
  // dx in x's layout (the padding columns of x have zero gradient).
  std::vector<float> gx(size_t(R * ldx), 0.f);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t i = 0; i < dim; ++i) gx[size_t(r * ldx + i)] = dx[size_t(r * lddx + i)] - 0.5f;
    for (int64_t i = dim; i < lddx; ++i) EXPECT_EQ(dx[size_t(r * lddx + i)], 0.5f) << "wrote past dim";
  }
  ref::check_grad("rmsnorm dx", xd, gx, L, 11, 3, 8);
  ref::check_grad("rmsnorm dw", wd, minus(dw, -0.25f), L, 12, 3, 8);
}

// YaRN's attention factor (mscale / mscale_all_dim of 0.1·m·ln(factor) + 1) is folded into
// both cos and sin; the angles are position × Rope's inverse frequencies in fp32.
TEST(TrainOps, RopeTableFoldsAttentionFactor) {
  const double factor = 4;
  const ModelConfig cfg = qwen_config({{"type", "yarn"}, {"factor", factor},
                                       {"original_max_position_embeddings", 64}, {"mscale", 1.0},
                                       {"mscale_all_dim", 0.5}});
  const double af = (0.1 * 1.0 * std::log(factor) + 1) / (0.1 * 0.5 * std::log(factor) + 1);
  const int64_t dim = 16, P = 40;
  const RopeTable t = make_rope_table(cfg, dim, false, P);
  const Rope rp(cfg, dim, false);
  ASSERT_EQ(t.cos.size(), size_t(P * dim / 2));
  EXPECT_FALSE(t.interleaved);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < dim / 2; ++i) {
      const double ang = double(float(p) * rp.inv_freq()[size_t(i)]);
      EXPECT_NEAR(t.cos[size_t(p * dim / 2 + i)], std::cos(ang) * af, 2e-6);
      EXPECT_NEAR(t.sin[size_t(p * dim / 2 + i)], std::sin(ang) * af, 2e-6);
    }
  // Without mscale, YaRN's default factor 0.1·ln(factor) + 1.
  const ModelConfig cfg2 = qwen_config({{"type", "yarn"}, {"factor", factor}, {"original_max_position_embeddings", 64}});
  const RopeTable t2 = make_rope_table(cfg2, dim, false, 2);
  EXPECT_NEAR(t2.cos[0], 0.1 * std::log(factor) + 1, 1e-6);
}

struct RopeCase {
  const char* name;
  ModelConfig cfg;
  bool interleaved;
};

// rope_fwd on a strided multi-head layout (MLA's: rotated part at an offset within each head)
// against the reference; rope_bwd against central differences (the rotation is linear, so
// this is its transpose).
void check_rope(const RopeCase& c) {
  SCOPED_TRACE(c.name);
  const Seqs s{3, 7};
  const int64_t R = s.rows(), heads = 3, dim = 16, off = 8, stride = 24, ld = heads * stride + 5;
  const RopeTable t = make_rope_table(c.cfg, dim, c.interleaved, s.T);
  const Rope rp(c.cfg, dim, c.interleaved);
  auto x = ref::rand_f(size_t(R * ld), 21);
  std::vector<float> y = x;
  rope_fwd(t, s, y.data(), ld, heads, stride, off);
  Vec yr = ref::to_d(x);
  ref::rope(yr, R, s.T, ld, heads, stride, off, rp, dim, c.interleaved);
  for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], yr[i], 2e-6) << i;
  // Position 3 of the second sequence rotates (position 0 would be the identity).
  EXPECT_NE(y[size_t((s.T + 3) * ld + off)], x[size_t((s.T + 3) * ld + off)]);

  auto dy = ref::rand_f(size_t(R * ld), 22);
  std::vector<float> dx = dy;
  rope_bwd(t, s, dx.data(), ld, heads, stride, off);
  Vec xd = ref::to_d(x);
  auto L = [&] {
    Vec yy = xd;
    ref::rope(yy, R, s.T, ld, heads, stride, off, rp, dim, c.interleaved);
    return ref::dot(yy, dy);
  };
  ref::check_grad("rope dx", xd, dx, L, 23, 3, 8);
}

TEST(TrainOps, RopeBothLayoutsYarnAndLlama3) {
  const ModelConfig v3 = fixture_config("tiny-deepseek-v3");       // YaRN, mscale = mscale_all_dim
  const ModelConfig v2 = fixture_config("tiny-deepseek-v2-lite");  // YaRN factor 40 over 16 positions
  const ModelConfig llama = fixture_config("tiny-llama3");         // llama3 scaling
  const ModelConfig qy = qwen_config({{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 8}});
  check_rope({"deepseek-v3 interleaved", v3, true});
  check_rope({"deepseek-v2 interleaved", v2, true});
  check_rope({"deepseek-v3 halves", v3, false});
  check_rope({"llama3 halves", llama, false});
  check_rope({"llama3 interleaved", llama, true});
  check_rope({"yarn with attention factor, halves", qy, false});
}

TEST(TrainOps, SwigluMatchesReferenceAndGradients) {
  const int64_t n = 50;
  auto g = ref::rand_f(size_t(n), 31, -4.f, 4.f), u = ref::rand_f(size_t(n), 32, -2.f, 2.f), dh = ref::rand_f(size_t(n), 33);
  std::vector<float> h(size_t(n), 0.f), dg(size_t(n), 0.5f), du(size_t(n), 0.5f);
  swiglu_fwd(g.data(), u.data(), h.data(), n);
  Vec gd = ref::to_d(g), ud = ref::to_d(u);
  auto fwd = [&] {
    Vec r(size_t(n), 0.0);
    for (int64_t i = 0; i < n; ++i) r[size_t(i)] = gd[size_t(i)] / (1 + std::exp(-gd[size_t(i)])) * ud[size_t(i)];
    return r;
  };
  const Vec hr = fwd();
  for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(h[size_t(i)], hr[size_t(i)], 1e-5);
  swiglu_bwd(dh.data(), g.data(), u.data(), dg.data(), du.data(), n);
  auto L = [&] { return ref::dot(fwd(), dh); };
  ref::check_grad("swiglu dg", gd, minus(dg, 0.5f), L, 34, 2, 10);
  ref::check_grad("swiglu du", ud, minus(du, 0.5f), L, 35, 2, 10);
}

TEST(TrainOps, EmbeddingLookupAndScatterAdd) {
  const int64_t V = 6, D = 5, R = 7;
  auto E = ref::rand_f(size_t(V * D), 41), dy = ref::rand_f(size_t(R * D), 42);
  const std::vector<int32_t> ids = {3, 0, 3, 5, 3, 1, 0};
  std::vector<float> y(size_t(R * D)), dE(size_t(V * D), 0.25f);
  embed_fwd(E.data(), ids.data(), y.data(), R, D);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < D; ++i) EXPECT_EQ(y[size_t(r * D + i)], E[size_t(ids[size_t(r)] * D + i)]);
  embed_bwd(dy.data(), ids.data(), dE.data(), R, D);
  for (int64_t v = 0; v < V; ++v)
    for (int64_t i = 0; i < D; ++i) {
      double want = 0.25;
      for (int64_t r = 0; r < R; ++r)
        if (ids[size_t(r)] == v) want += dy[size_t(r * D + i)];
      EXPECT_NEAR(dE[size_t(v * D + i)], want, 1e-6) << "row " << v;
    }
}

struct AttnCase {
  Seqs s;
  AttnDims d;
  ThreadPool* pool;
};

void check_attention(const AttnCase& c) {
  const Seqs& s = c.s;
  const AttnDims& d = c.d;
  SCOPED_TRACE(testing::Message() << "B=" << s.B << " T=" << s.T << " H=" << d.H << " Hkv=" << d.Hkv);
  const int64_t R = s.rows();
  auto q = ref::rand_f(size_t(R * d.H * d.dqk), 51, -1.5f, 1.5f), k = ref::rand_f(size_t(R * d.Hkv * d.dqk), 52, -1.5f, 1.5f);
  auto v = ref::rand_f(size_t(R * d.Hkv * d.dv), 53), dout = ref::rand_f(size_t(R * d.H * d.dv), 54);
  std::vector<float> out(size_t(R * d.H * d.dv), 9.f), probs(size_t(s.B * d.H * s.T * s.T), 9.f);
  attention_fwd(s, d, q.data(), k.data(), v.data(), out.data(), probs.data(), c.pool);
  Vec qd = ref::to_d(q), kd = ref::to_d(k), vd = ref::to_d(v), pr;
  const Vec outr = ref::attention(qd, kd, vd, s.B, s.T, d.H, d.Hkv, d.dqk, d.dv, d.scale, &pr);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], outr[i], 2e-5) << "out " << i;
  for (int64_t bh = 0; bh < s.B * d.H; ++bh)
    for (int64_t i = 0; i < s.T; ++i)
      for (int64_t j = 0; j < s.T; ++j) {
        const size_t at = size_t((bh * s.T + i) * s.T + j);
        if (j > i) ASSERT_EQ(probs[at], 0.f) << "masked prob at " << bh << "," << i << "," << j;
        else ASSERT_NEAR(probs[at], pr[at], 2e-6) << "prob at " << bh << "," << i << "," << j;
      }

  std::vector<float> dq(q.size(), 0.5f), dk(k.size(), 0.5f), dv(v.size(), 0.5f);
  attention_bwd(s, d, q.data(), k.data(), v.data(), probs.data(), dout.data(), dq.data(), dk.data(), dv.data(), c.pool);
  auto L = [&] { return ref::dot(ref::attention(qd, kd, vd, s.B, s.T, d.H, d.Hkv, d.dqk, d.dv, d.scale), dout); };
  ref::check_grad("attention dq", qd, minus(dq, 0.5f), L, 55);
  ref::check_grad("attention dk", kd, minus(dk, 0.5f), L, 56);
  ref::check_grad("attention dv", vd, minus(dv, 0.5f), L, 57);
}

TEST(TrainOps, AttentionGqaMatchesReferenceAndGradients) {
  ThreadPool pool(2);
  // T = 70 crosses the 64-row causal blocks; Hkv = 2 of H = 4 shares each K/V head by two.
  check_attention({Seqs{2, 70}, AttnDims{4, 2, 12, 8, 0.3f}, &pool});
  check_attention({Seqs{3, 5}, AttnDims{3, 1, 6, 10, 0.5f}, nullptr});
  check_attention({Seqs{1, 9}, AttnDims{2, 2, 8, 8, 1.0f}, &pool});
}

TEST(TrainOps, CrossEntropySumGradientAndCorrect) {
  ThreadPool pool(2);
  const int64_t R = 9, V = 37;
  const float scale = 0.5f;
  auto logits = ref::rand_f(size_t(R * V), 61, -3.f, 3.f);
  const std::vector<int32_t> tg = {4, -1, 0, 36, 7, -1, 12, 12, 20};
  // Rows 0 and 6 predict their target; row 3's target is row 3's argmax only if it is.
  logits[size_t(0 * V + 4)] = 8.f;
  logits[size_t(6 * V + 12)] = 9.f;
  int64_t want_ok = 0;
  for (int64_t r = 0; r < R; ++r) {
    if (tg[size_t(r)] < 0) continue;
    int64_t am = 0;
    for (int64_t j = 1; j < V; ++j)
      if (logits[size_t(r * V + j)] > logits[size_t(r * V + am)]) am = j;
    want_ok += am == tg[size_t(r)];
  }
  ASSERT_GE(want_ok, 2);
  Vec ld = ref::to_d(logits);
  auto loss = [&] {
    double s = 0;
    for (int64_t r = 0; r < R; ++r) {
      if (tg[size_t(r)] < 0) continue;
      double sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(ld[size_t(r * V + j)]);
      s += std::log(sum) - ld[size_t(r * V + tg[size_t(r)])];
    }
    return s;
  };
  for (ThreadPool* p : {static_cast<ThreadPool*>(nullptr), &pool}) {
    std::vector<float> dl(size_t(R * V), 5.f);
    int64_t ok = -1;
    const double sum = cross_entropy(logits.data(), tg.data(), R, V, scale, dl.data(), p, &ok);
    EXPECT_NEAR(sum, loss(), 1e-5 * loss());
    EXPECT_EQ(ok, want_ok);
    for (int64_t j = 0; j < V; ++j) {
      EXPECT_EQ(dl[size_t(1 * V + j)], 0.f);
      EXPECT_EQ(dl[size_t(5 * V + j)], 0.f);
    }
    auto L = [&] { return double(scale) * loss(); };
    ref::check_grad("cross_entropy dlogits", ld, dl, L, 62, 3, 10);
    // In place (dlogits aliasing logits) gives the same.
    std::vector<float> inplace = logits;
    int64_t ok2 = -1;
    EXPECT_EQ(cross_entropy(inplace.data(), tg.data(), R, V, scale, inplace.data(), p, &ok2), sum);
    EXPECT_EQ(ok2, want_ok);
    for (size_t i = 0; i < dl.size(); ++i) EXPECT_EQ(inplace[i], dl[i]) << i;
  }
}

}  // namespace
}  // namespace fathom::train
