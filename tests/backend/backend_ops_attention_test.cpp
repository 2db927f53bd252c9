// Backend ops, KV cache and attention: kv_write/kv_read, attention_gqa, attention_mla_latent
// (decode path and units path) and attention_mla_naive against a naive reference in double;
// batch and thread invariance of the attention ops.
#include <algorithm>
#include <functional>

#include "backend/kv_cache.h"
#include "ops_reference.h"

namespace fathom::opstest {
namespace {

class BackendAttention : public BackendTest {};

// A cache's contents mirrored on the host, [layers, slots, ctx, width].
struct HostCache {
  int64_t layers, slots, ctx, width;
  std::vector<float> v;
  HostCache(int64_t l, int64_t s, int64_t c, int64_t w) : layers(l), slots(s), ctx(c), width(w), v(size_t(l * s * c * w)) {}
  float* at(int64_t l, int64_t s, int64_t p) { return v.data() + ((l * slots + s) * ctx + p) * width; }
};

// Fills every position of every slot of `layer` with random rows (through kv_write).
HostCache random_cache(Backend& be, KvCache& c, int64_t layer, uint32_t seed) {
  HostCache h(c.n_layers(), c.n_slots(), c.max_ctx(), c.width());
  BatchRows b;
  b.rows = c.n_slots() * c.max_ctx();
  for (int64_t s = 0; s < c.n_slots(); ++s)
    for (int64_t p = 0; p < c.max_ctx(); ++p) b.slot.push_back(s), b.pos.push_back(p);
  const auto rows = randn(size_t(b.rows * c.width()), seed);
  std::copy(rows.begin(), rows.end(), h.at(layer, 0, 0));
  DevBuf d(be, rows);
  be.kv_write(c, layer, b, RowsRef{d.p(), b.rows, c.width(), c.width()}, 0);
  return h;
}

// kv_write then kv_read: pure data movement, bit-exact (other layers, slots, positions and
// columns untouched; strided source and destination).
TEST_P(BackendAttention, KvWriteRead) {
  auto be = make(2);
  KvCache c(*be, 2, 13, 3, 9);
  HostCache h(2, 3, 9, 13);
  BatchRows b;
  b.rows = 4;
  b.slot = {2, 0, 2, 1};
  b.pos = {3, 0, 4, 8};
  const auto src = randn(size_t(4 * 8), 1);
  DevBuf ds(*be, src);
  be->kv_write(c, 1, b, RowsRef{ds.p() + 1, 4, 5, 8}, 4);
  for (int64_t i = 0; i < 4; ++i)
    std::copy(src.begin() + 1 + i * 8, src.begin() + 6 + i * 8, h.at(1, b.slot[size_t(i)], b.pos[size_t(i)]) + 4);
  for (int64_t l = 0; l < 2; ++l)
    for (int64_t s = 0; s < 3; ++s) {
      DevBuf d(*be, size_t(9 * 13));
      be->kv_read(c, l, s, 0, RowsRef{d.p(), 9, 13, 13});
      ASSERT_TRUE(bit_equal(d.get(), std::vector<float>(h.at(l, s, 0), h.at(l, s, 9)), 13)) << "layer " << l << " slot " << s;
    }
  // Part of the rows and columns, into a strided buffer whose padding must survive.
  const auto pad = randn(5 * 7, 2);
  DevBuf d(*be, pad);
  be->kv_read(c, 1, 2, 4, RowsRef{d.p() + 1, 5, 5, 7});
  std::vector<float> want = pad;
  for (int64_t t = 0; t < 5; ++t) std::copy(h.at(1, 2, t) + 4, h.at(1, 2, t) + 9, want.begin() + 1 + t * 7);
  ASSERT_TRUE(bit_equal(d.get(), want, 7)) << "partial read";
}

// One query against P keys, in double, with a bound on an fp32 implementation's error:
//   score_t = scale·(q·k_t) by fp32 dots of n products: e_t ≤ (n + 2)·u·scale·Σ|q·k_t|;
//   a common error of all scores cancels in softmax, so a weight's relative error is at most
//   2·max e plus softmax's own rounding (see the Softmax test): u·(|s_t - max| + Σp|s - max| + P + 8);
//   out = Σ p_t·v_t adds (P + 2)·u·Σp|v|.
struct Score {
  double dot, mag;  // q·k and Σ|q_i·k_i|
};
void attend(int64_t P, double scale, int64_t n, const std::function<Score(int64_t)>& score, int64_t vd,
            const std::function<const float*(int64_t)>& value, double* want, double* tol) {
  std::vector<double> s(static_cast<size_t>(P)), p(static_cast<size_t>(P));
  double E = 0, mx = -INFINITY, sum = 0, s1 = 0;
  for (int64_t t = 0; t < P; ++t) {
    const Score sc = score(t);
    s[size_t(t)] = scale * sc.dot;
    E = std::max(E, double(n + 2) * kU * std::fabs(scale) * sc.mag);
    mx = std::max(mx, s[size_t(t)]);
  }
  for (int64_t t = 0; t < P; ++t) sum += p[size_t(t)] = std::exp(s[size_t(t)] - mx);
  for (int64_t t = 0; t < P; ++t) p[size_t(t)] /= sum, s1 += p[size_t(t)] * (mx - s[size_t(t)]);
  for (int64_t c = 0; c < vd; ++c) want[c] = 0, tol[c] = 1e-30;
  for (int64_t t = 0; t < P; ++t) {
    const float* v = value(t);
    const double rel = 2 * E + kU * ((mx - s[size_t(t)]) + s1 + double(2 * P + 10));
    for (int64_t c = 0; c < vd; ++c) {
      want[c] += p[size_t(t)] * v[c];
      tol[c] += p[size_t(t)] * std::fabs(v[c]) * rel;
    }
  }
}

Score dot(const float* a, const float* b, int64_t n) {
  Score s{0, 0};
  for (int64_t i = 0; i < n; ++i) s.dot += double(a[i]) * b[i], s.mag += std::fabs(double(a[i]) * b[i]);
  return s;
}

// The batch of the attention tests: a prefill chunk of slot 0 at positions 130..134 (past a
// 64-row split of the decode path), a decode row of slot 1 and slot 2's first token.
const std::vector<int64_t> kSlot = {0, 0, 0, 0, 0, 1, 2};
const std::vector<int64_t> kPos = {130, 131, 132, 133, 134, 64, 0};
// Batches made of some of those rows: each row's result must not depend on which.
const std::vector<std::vector<int64_t>> kSubsets = {{0, 1, 2, 3, 4, 5, 6}, {0, 1, 2, 3, 4}, {5}, {6}, {4}, {4, 5}, {2, 3, 4}, {5, 6}};

BatchRows batch(const std::vector<int64_t>& rows) {
  BatchRows b;
  b.rows = int64_t(rows.size());
  for (int64_t i : rows) b.slot.push_back(kSlot[size_t(i)]), b.pos.push_back(kPos[size_t(i)]);
  return b;
}

// attention_gqa (heads 6 over 3 key/value heads of 17): against the reference, and the same
// bits for every batch composition and 1, 2 or 3 threads.
TEST_P(BackendAttention, Gqa) {
  AttnShape s;
  s.heads = 6, s.kv_heads = 3, s.head_dim = 17, s.scale = 1.0f / std::sqrt(17.0f);
  const int64_t H = s.heads, hd = s.head_dim, kvw = s.kv_heads * hd, W = 2 * kvw, R = int64_t(kSlot.size());
  const auto q = randn(size_t(R * H * hd), 3);
  std::vector<float> base;
  std::vector<double> want(size_t(R * H * hd)), tol(want.size());
  for (int threads : {1, 2, 3}) {
    auto be = make(threads);
    KvCache c(*be, 2, W, 3, 150);
    HostCache h = random_cache(*be, c, 1, 4);
    if (threads == 1)
      for (int64_t i = 0; i < R; ++i)
        for (int64_t hh = 0; hh < H; ++hh) {
          const int64_t kh = hh / (H / s.kv_heads);
          const float* qi = q.data() + (i * H + hh) * hd;
          HostCache* hp = &h;
          attend(kPos[size_t(i)] + 1, s.scale, hd,
                 [&](int64_t t) { return dot(qi, hp->at(1, kSlot[size_t(i)], t) + kh * hd, hd); }, hd,
                 [&](int64_t t) { return hp->at(1, kSlot[size_t(i)], t) + kvw + kh * hd; },
                 want.data() + (i * H + hh) * hd, tol.data() + (i * H + hh) * hd);
        }
    for (const auto& rows : kSubsets) {
      std::vector<float> qs;
      for (int64_t i : rows) qs.insert(qs.end(), q.begin() + i * H * hd, q.begin() + (i + 1) * H * hd);
      DevBuf dq(*be, qs), dout(*be, qs.size());
      be->attention_gqa(s, dq.p(), c, 1, batch(rows), dout.p());
      const auto got = dout.get();
      std::vector<float> base_rows;
      std::vector<double> w, t;
      if (base.empty()) base = got;
      for (int64_t i : rows) {
        base_rows.insert(base_rows.end(), base.begin() + i * H * hd, base.begin() + (i + 1) * H * hd);
        w.insert(w.end(), want.begin() + i * H * hd, want.begin() + (i + 1) * H * hd);
        t.insert(t.end(), tol.begin() + i * H * hd, tol.begin() + (i + 1) * H * hd);
      }
      const std::string what = "threads " + std::to_string(threads) + ", " + std::to_string(rows.size()) +
                               " rows from row " + std::to_string(rows[0]);
      ASSERT_TRUE(within(got, w, t, H * hd)) << what;
      ASSERT_TRUE(bit_equal(got, base_rows, H * hd)) << what << ": not the bits of the full batch on 1 thread";
    }
  }
}

// attention_mla_latent: ql [H, R, latent+rope] scored against cached [c | k_pe] rows, out
// [H, R, latent] = Σ softmax · c. With 2 or 3 threads, batches of fewer rows than threads take
// the decode path (one row split across the pool) and the others the units path (with one
// or several groups of heads): every composition and thread count must give the same bits.
TEST_P(BackendAttention, MlaLatent) {
  AttnShape s;
  s.heads = 3, s.latent = 101, s.rope = 7, s.scale = 0.11f;
  const int64_t H = s.heads, r = s.latent, W = s.latent + s.rope, R = int64_t(kSlot.size());
  const auto ql = randn(size_t(H * R * W), 5, 0.5f);  // [H, R, W]
  std::vector<float> base;                             // [H, R, r]
  std::vector<double> want(size_t(H * R * r)), tol(want.size());
  for (int threads : {1, 2, 3}) {
    auto be = make(threads);
    KvCache c(*be, 2, W, 3, 150);
    HostCache h = random_cache(*be, c, 1, 6);
    if (threads == 1)
      for (int64_t hh = 0; hh < H; ++hh)
        for (int64_t i = 0; i < R; ++i) {
          const float* qi = ql.data() + (hh * R + i) * W;
          HostCache* hp = &h;
          attend(kPos[size_t(i)] + 1, s.scale, W, [&](int64_t t) { return dot(qi, hp->at(1, kSlot[size_t(i)], t), W); },
                 r, [&](int64_t t) { return hp->at(1, kSlot[size_t(i)], t); }, want.data() + (hh * R + i) * r,
                 tol.data() + (hh * R + i) * r);
        }
    for (const auto& rows : kSubsets) {
      const int64_t n = int64_t(rows.size());
      std::vector<float> qs(size_t(H * n * W));
      for (int64_t hh = 0; hh < H; ++hh)
        for (int64_t j = 0; j < n; ++j)
          std::copy_n(ql.begin() + (hh * R + rows[size_t(j)]) * W, W, qs.begin() + (hh * n + j) * W);
      DevBuf dq(*be, qs), dout(*be, size_t(H * n * r));
      be->attention_mla_latent(s, dq.p(), c, 1, batch(rows), dout.p());
      const auto got = dout.get();
      if (base.empty()) base = got;
      std::vector<float> base_rows;
      std::vector<double> w, t;
      for (int64_t hh = 0; hh < H; ++hh)
        for (int64_t i : rows) {
          const int64_t o = (hh * R + i) * r;
          base_rows.insert(base_rows.end(), base.begin() + o, base.begin() + o + r);
          w.insert(w.end(), want.begin() + o, want.begin() + o + r);
          t.insert(t.end(), tol.begin() + o, tol.begin() + o + r);
        }
      const std::string what = "threads " + std::to_string(threads) + ", " + std::to_string(n) + " rows from row " +
                               std::to_string(rows[0]) + (n < threads ? " (decode path)" : " (units)");
      ASSERT_TRUE(within(got, w, t, r)) << what;
      ASSERT_TRUE(bit_equal(got, base_rows, r)) << what << ": not the bits of the full batch on 1 thread";
    }
  }
}

// attention_mla_naive: rows i0..i1 of one chunk of slot 1 (positions 20..24), q [R, H,
// nope+rope] against kv [P, H, nope+v] for the chunk's whole prefix and k_pe from the cache
// (after the latent). Rows outside [i0, i1) are untouched; any split of the rows and any
// thread count give the same bits.
TEST_P(BackendAttention, MlaNaive) {
  AttnShape s;
  s.heads = 3, s.nope = 9, s.rope = 6, s.v = 11, s.latent = 19, s.scale = 0.2f;
  const int64_t H = s.heads, qk = s.nope + s.rope, KV = s.nope + s.v, W = s.latent + s.rope, R = 5, P = 25;
  BatchRows b;
  b.rows = R;
  for (int64_t i = 0; i < R; ++i) b.slot.push_back(1), b.pos.push_back(20 + i);
  const auto q = randn(size_t(R * H * qk), 7), kv = randn(size_t(P * H * KV), 8), pad = randn(size_t(R * H * s.v), 9);
  std::vector<float> base;
  for (int threads : {1, 2, 3}) {
    auto be = make(threads);
    KvCache c(*be, 2, W, 3, 40);
    HostCache h = random_cache(*be, c, 0, 10);
    DevBuf dq(*be, q), dkv(*be, kv);
    std::vector<double> want = to_double(pad), tol(want.size(), 0.0);
    for (int64_t i = 1; i < 4; ++i)
      for (int64_t hh = 0; hh < H; ++hh) {
        const float* qi = q.data() + (i * H + hh) * qk;
        attend(b.pos[size_t(i)] + 1, s.scale, qk + 1,
               [&](int64_t t) {
                 const Score a = dot(qi, kv.data() + (t * H + hh) * KV, s.nope);
                 const Score e = dot(qi + s.nope, h.at(0, 1, t) + s.latent, s.rope);
                 return Score{a.dot + e.dot, a.mag + e.mag};
               },
               s.v, [&](int64_t t) { return kv.data() + (t * H + hh) * KV + s.nope; },
               want.data() + (i * H + hh) * s.v, tol.data() + (i * H + hh) * s.v);
      }
    DevBuf dout(*be, pad);
    be->attention_mla_naive(s, dq.p(), dkv.p(), c, 0, b, 1, 4, dout.p());
    const auto got = dout.get();
    ASSERT_TRUE(within(got, want, tol, H * s.v)) << "threads " << threads;
    if (base.empty()) base = got;
    ASSERT_TRUE(bit_equal(got, base, H * s.v)) << "threads " << threads;
    DevBuf split(*be, pad);
    be->attention_mla_naive(s, dq.p(), dkv.p(), c, 0, b, 1, 2, split.p());
    be->attention_mla_naive(s, dq.p(), dkv.p(), c, 0, b, 2, 4, split.p());
    ASSERT_TRUE(bit_equal(split.get(), base, H * s.v)) << "rows split 1..2, 2..4; threads " << threads;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendAttention, ::testing::ValuesIn(backend_factories()), factory_name);

}  // namespace
}  // namespace fathom::opstest
