#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/bandwidth.h"
#include "backend/cpu/quantize.h"
#include "backend/cpu/vec.h"
#include "backend/cpu/vmath.h"
#include "backend/kv_cache.h"
#include "core/error.h"

namespace fathom {

std::unique_ptr<Backend> make_backend(const BackendOpts& opts) { return std::make_unique<cpu::CpuBackend>(opts); }

namespace cpu {

CpuBackend::CpuBackend(const BackendOpts& o) : pool_(o.threads) {}

// ---- memory (64-byte aligned host memory)

float* CpuBackend::alloc_floats(size_t n) {
  void* p = std::aligned_alloc(64, std::max<size_t>(64, (n * sizeof(float) + 63) / 64 * 64));
  if (!p) fail("out of memory allocating {} floats", n);
  return static_cast<float*>(p);
}
void CpuBackend::free_floats(float* p) { std::free(p); }
void CpuBackend::write(float* dst, const float* host, size_t n) { std::memcpy(dst, host, n * sizeof(float)); }
void CpuBackend::read(float* host, const float* src, size_t n) { std::memcpy(host, src, n * sizeof(float)); }
void CpuBackend::fill(float* dst, float v, size_t n) { std::fill(dst, dst + n, v); }

// ---- weights

// What becomes of a stored matrix: requantized to p.requant, then packed for the CPU kernels
// (Packed16) when the CPU has a faster kernel for it. Matrices read by rows only, and rows
// that do not split into 32-value blocks, keep their stored form.
CpuBackend::Plan CpuBackend::plan(const StoredMatrix& m, const WeightPrep& p) const {
  Plan r{m.dtype};
  if (p.rows_only || m.cols % 32) return r;
  r.requant = p.requant && requantizes_to(m.dtype, m.cols, *p.requant);
  if (r.requant) r.dtype = *p.requant;
  r.pack = p.repack && packing_pays(r.dtype);
  return r;
}

size_t CpuBackend::arena_bytes(const StoredMatrix& m, const WeightPrep& p) const {
  const Plan pl = plan(m, p);
  const size_t n = pl.pack ? packed_bytes(pl.dtype, m.rows, m.cols)
                           : pl.requant ? dtype_bytes(pl.dtype, m.cols) * size_t(m.rows) : 0;
  return (n + 63) / 64 * 64;
}

void CpuBackend::reserve_arena(size_t bytes) {
  FATHOM_CHECK(!arena_, "the weight arena is reserved once");
  if (bytes) arena_ = alloc_huge(bytes);
  arena_size_ = bytes;
  arena_used_ = 0;
}

uint8_t* CpuBackend::take(size_t n) {
  uint8_t* p = arena_.get() + arena_used_;
  arena_used_ += (n + 63) / 64 * 64;
  FATHOM_CHECK(arena_used_ <= arena_size_, "weights arena overflow");
  return p;
}

std::unique_ptr<Weight> CpuBackend::prepare_matrix(const StoredMatrix& m, const WeightPrep& p) {
  WeightView w = view_of(m);
  const Plan pl = plan(m, p);
  if (pl.requant) {
    WeightView q = w;
    q.dtype = pl.dtype;
    q.block_scale = nullptr;
    const size_t rb = dtype_bytes(pl.dtype, w.cols);
    AlignedBytes tmp;  // the row-major result, when packing follows
    uint8_t* buf = pl.pack ? (tmp = alloc_aligned(rb * size_t(w.rows))).get() : take(rb * size_t(w.rows));
    pool_.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1, int) {
      std::vector<float> row(static_cast<size_t>(w.cols));  // [cols]
      for (int64_t r = r0; r < r1; ++r) {
        cpu::dequantize_row(w, r, row.data());
        quantize_row(pl.dtype, row.data(), w.cols, buf + rb * size_t(r));
      }
    });
    q.data = buf;
    w = q;
    if (pl.pack) w = pack16(w, take(packed_bytes(w.dtype, w.rows, w.cols)), &pool_);
  } else if (pl.pack) {
    w = pack16(w, take(packed_bytes(w.dtype, w.rows, w.cols)), &pool_);
  }
  return std::make_unique<CpuWeight>(w);
}

std::unique_ptr<Weight> CpuBackend::prepare_vector(const std::vector<float>& v) {
  WeightView w;
  w.dtype = DType::F32;
  w.rows = 1;
  w.cols = int64_t(v.size());
  auto cw = std::make_unique<CpuWeight>(w);
  cw->vec = v;
  cw->view.data = cw->vec.data();
  return cw;
}

void CpuBackend::dequantize_row(const Weight& w, int64_t r, float* host) const {
  cpu::dequantize_row(view_of(w), r, host);
}

namespace {
// Absorbed MLA's per-head views of uk_t [H·r, nope] and uv [H·v, r].
void slice_heads(const WeightView& uk_t, const WeightView& uv, int64_t H, MlaAbsorbed& a) {
  const int64_t r = uk_t.rows / H, v = uv.rows / H;
  a.bytes = uv.bytes() + uk_t.bytes();
  for (int64_t h = 0; h < H; ++h) {
    a.uk_t.push_back(std::make_unique<CpuWeight>(slice_rows(uk_t, h * r, r)));
    a.uv.push_back(std::make_unique<CpuWeight>(slice_rows(uv, h * v, v)));
  }
}
}  // namespace

// W_UV and W_UKᵀ in a format close to the stored one: block formats and bf16 stay as they
// are (same values), anything else (f16, fp8 with scales) becomes f32, which holds their
// values exactly. Block formats are packed when kv_b itself was.
MlaAbsorbed CpuBackend::prepare_mla_absorbed(const Weight& kv_bw, int64_t H, int64_t nope, int64_t v) {
  const WeightView& kv_b = view_of(kv_bw);
  const int64_t r = kv_b.cols, per = nope + v;
  std::vector<float> full(size_t(kv_b.rows * r));  // [H*(nope+v), r] exact values
  for (int64_t i = 0; i < kv_b.rows; ++i) cpu::dequantize_row(kv_b, i, full.data() + i * r);
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
    else quantize_row(t, src, n, dst);
  };
  WeightView uv;  // [H*v, r]
  uv.dtype = pick(r);
  uv.rows = H * v;
  uv.cols = r;
  AlignedBytes uv_data = alloc_aligned(uv.bytes());
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < v; ++j) {
      uint8_t* dst = uv_data.get() + size_t(h * v + j) * uv.row_bytes();
      if (uv.dtype == kv_b.dtype) copy_row_blocks(kv_b, h * per + nope + j, dst);  // same values
      else store(uv.dtype, full.data() + (h * per + nope + j) * r, r, dst);
    }
  uv.data = uv_data.get();
  WeightView uk_t;  // [H*r, nope]
  uk_t.dtype = pick(nope);
  uk_t.rows = H * r;
  uk_t.cols = nope;
  AlignedBytes uk_data = alloc_aligned(uk_t.bytes());
  std::vector<float> col(static_cast<size_t>(nope));  // [nope]
  for (int64_t h = 0; h < H; ++h)
    for (int64_t j = 0; j < r; ++j) {
      for (int64_t n = 0; n < nope; ++n) col[size_t(n)] = full[size_t((h * per + n) * r + j)];
      store(uk_t.dtype, col.data(), nope, uk_data.get() + size_t(h * r + j) * uk_t.row_bytes());
    }
  uk_t.data = uk_data.get();
  // Per-head slices must not split a packed group of 16 rows.
  const bool repack = kv_b.layout == Layout::Packed16;
  auto pack = [&](WeightView& w, AlignedBytes& data, int64_t per_head) {
    if (!repack || !packing_pays(w.dtype) || per_head % kPackRows) return;
    AlignedBytes packed;
    w = pack16(w, packed, nullptr);
    data = std::move(packed);
  };
  pack(uv, uv_data, v);
  pack(uk_t, uk_data, r);
  MlaAbsorbed a;
  slice_heads(uk_t, uv, H, a);
  auto own = [&](const WeightView& w, AlignedBytes data) {
    auto o = std::make_unique<CpuWeight>(w);
    o->owned = std::move(data);
    a.owners.push_back(std::move(o));
  };
  own(uv, std::move(uv_data));
  own(uk_t, std::move(uk_data));
  return a;
}

MlaAbsorbed CpuBackend::mla_absorbed_from(const Weight& uk_tw, const Weight& uvw, int64_t H) {
  const WeightView &uk_t = view_of(uk_tw), &uv = view_of(uvw);
  FATHOM_CHECK(H > 0 && uk_t.rows % H == 0 && uv.rows % H == 0 && uv.cols * H == uk_t.rows,
               "absorbed MLA halves [{}, {}] and [{}, {}] do not split into {} heads", uk_t.rows, uk_t.cols, uv.rows,
               uv.cols, H);
  const int64_t r = uk_t.rows / H, v = uv.rows / H;
  MlaAbsorbed a;
  auto splits_group = [](const WeightView& w, int64_t per_head) {
    return w.layout == Layout::Packed16 && per_head % kPackRows != 0;
  };
  if (splits_group(uk_t, r) || splits_group(uv, v)) return a;  // empty: derive them from kv_b instead
  slice_heads(uk_t, uv, H, a);
  return a;
}

// ---- linear algebra

void CpuBackend::matmul(const Weight& w, const float* x, int64_t m, float* y) {
  cpu::matmul(view_of(w), x, m, y, pool_);
}

void CpuBackend::matmul_many(const fathom::MatmulTask* tasks, size_t n) {
  tasks_.clear();
  for (size_t i = 0; i < n; ++i) tasks_.push_back({&view_of(*tasks[i].w), tasks[i].x, tasks[i].m, tasks[i].y});
  cpu::matmul_many(tasks_.data(), tasks_.size(), pool_);
}

void CpuBackend::add_bias(float* y, int64_t m, const Weight& bias) {
  const float* b = static_cast<const float*>(view_of(bias).data);
  const int64_t n = bias.cols();
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) y[i * n + j] += b[j];
}

void CpuBackend::add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

// ---- row-wise ops

void CpuBackend::rmsnorm(RowsRef x, const Weight& wt, RowsRef out, double eps) {
  const float* w = static_cast<const float*>(view_of(wt).data);
  const int64_t n = wt.cols();
  FATHOM_CHECK(x.cols == n && out.cols == n && out.rows == x.rows, "rmsnorm: shapes disagree");
  for (int64_t r = 0; r < x.rows; ++r) {
    const float* xr = x.p + r * x.stride;
    float* o = out.p + r * out.stride;
    float ss = 0.f;
    for (int64_t i = 0; i < n; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / float(n) + float(eps));
    for (int64_t i = 0; i < n; ++i) o[i] = w[i] * (xr[i] * inv);
  }
}

void CpuBackend::rope(const RopeParams& p, RowsRef x, int64_t heads, int64_t head_stride, const int64_t* pos) {
  const int64_t half = p.dim / 2;
  FATHOM_CHECK(half <= 512, "rope: dim {} exceeds 1024", p.dim);
  float cs[512], sn[512];
  for (int64_t r = 0; r < x.rows; ++r) {
    // cos/sin of fp32 angles, as transformers forms them (position * inv_freq in fp32).
    for (int64_t i = 0; i < half; ++i) {
      const float ang = float(pos[r]) * p.inv_freq[i];
      cs[i] = float(std::cos(double(ang))) * p.attn_factor;
      sn[i] = float(std::sin(double(ang))) * p.attn_factor;
    }
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x.p + r * x.stride + h * head_stride;
      for (int64_t i = 0; i < half; ++i) {
        const int64_t a = p.interleaved ? 2 * i : i, b = p.interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x1 * cs[i] + x0 * sn[i];
      }
    }
  }
}

// Split across the pool when worth a section: the exp per element makes it the longest serial
// loop of a decode step's MLP.
void CpuBackend::swiglu(float* g, const float* u, int64_t n) {
  pool_.parallel_for(n, 4096, [&](int64_t b, int64_t e, int) { cpu::swiglu(g + b, u + b, e - b); });
}

void CpuBackend::softmax(float* x, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) cpu::softmax(x + r * n, n);
}

void CpuBackend::copy_rows(RowsRef src, RowsRef dst) {
  FATHOM_CHECK(src.rows == dst.rows && src.cols == dst.cols, "copy_rows: shapes disagree");
  for (int64_t r = 0; r < src.rows; ++r)
    std::memcpy(dst.p + r * dst.stride, src.p + r * src.stride, size_t(src.cols) * sizeof(float));
}

// ---- embedding, gather/scatter, routing

void CpuBackend::embed(const Weight& table, const int32_t* tokens, int64_t n, float* out) {
  const WeightView& w = view_of(table);
  for (int64_t i = 0; i < n; ++i) cpu::dequantize_row(w, tokens[i], out + i * w.cols);
}

void CpuBackend::gather_rows(const float* src, int64_t cols, const int32_t* idx, int64_t n, float* dst) {
  for (int64_t j = 0; j < n; ++j) std::memcpy(dst + j * cols, src + int64_t(idx[j]) * cols, size_t(cols) * 4);
}

void CpuBackend::scatter_add(const float* y, int64_t cols, const int32_t* rows, const float* w, int64_t n,
                             float* out) {
  for (int64_t j = 0; j < n; ++j) axpy(w[j], y + j * cols, out + int64_t(rows[j]) * cols, cols);
}

void CpuBackend::moe_route(const RouterConfig& rc, const float* logits, int64_t rows, const Weight* bias,
                           int32_t* ids, float* weights) {
  const int64_t E = rc.n_experts, K = rc.top_k;
  route_tmp_.resize(size_t(2 * E));
  const float* b = bias ? static_cast<const float*>(view_of(*bias).data) : nullptr;
  for (int64_t i = 0; i < rows; ++i) route_token(rc, logits + i * E, b, ids + i * K, weights + i * K, route_tmp_.data());
}

// ---- KV cache and attention

float* CpuBackend::scratch(size_t n) {
  if (scratch_.size() < n) scratch_.resize(n);
  return scratch_.data();
}

void CpuBackend::kv_write(KvCache& c, int64_t layer, const BatchRows& b, RowsRef src, int64_t col0) {
  for (int64_t i = 0; i < src.rows; ++i)
    std::memcpy(c.at(layer, b.slot[size_t(i)], b.pos[size_t(i)]) + col0, src.p + i * src.stride,
                size_t(src.cols) * sizeof(float));
}

void CpuBackend::kv_read(const KvCache& c, int64_t layer, int64_t slot, int64_t col0, RowsRef dst) {
  for (int64_t t = 0; t < dst.rows; ++t)
    std::memcpy(dst.p + t * dst.stride, c.at(layer, slot, t) + col0, size_t(dst.cols) * sizeof(float));
}

void CpuBackend::attention_gqa(const AttnShape& s, const float* q, const KvCache& c, int64_t layer,
                               const BatchRows& b, float* out) {
  const int64_t R = b.rows, H = s.heads, hd = s.head_dim, kvw = s.kv_heads * hd;
  const int64_t max_ctx = c.max_ctx(), W = 2 * kvw, group = H / s.kv_heads;
  float* tbuf = scratch(size_t(max_ctx * pool_.size()));  // [threads, max_ctx]
  pool_.parallel_for(R * H, 1, [&](int64_t b0, int64_t e0, int t) {
    float* sc = tbuf + max_ctx * t;
    for (int64_t ih = b0; ih < e0; ++ih) {
      const int64_t i = ih / H, hh = ih % H, kh = hh / group, P = b.pos[size_t(i)] + 1;
      const float* qi = q + (i * H + hh) * hd;
      const float* c0 = c.at(layer, b.slot[size_t(i)], 0);
      for (int64_t tp = 0; tp < P; ++tp) sc[tp] = dot(qi, c0 + tp * W + kh * hd, hd) * s.scale;
      cpu::softmax(sc, P);
      float* oi = out + (i * H + hh) * hd;
      std::fill(oi, oi + hd, 0.f);
      for (int64_t tp = 0; tp < P; ++tp) axpy(sc[tp], c0 + tp * W + kvw + kh * hd, oi, hd);
    }
  });
}

namespace {
// One head's latent scores → attention weights; both absorbed paths go through here, so they
// give the same bits.
void scaled_softmax(float* s, int64_t P, float scale) {
  for (int64_t t = 0; t < P; ++t) s[t] *= scale;
  cpu::softmax(s, P);
}
}  // namespace

// Fewer rows than threads (decode): each row is split across the pool (latent_row_split).
// Otherwise units of (row, group of heads) go to whichever thread is free (rows of a prefill
// chunk see different context lengths); a unit scores all its heads against each cache row
// at once. Neither changes any bit: each (row, head) is computed the same way wherever it runs.
void CpuBackend::attention_mla_latent(const AttnShape& s, const float* ql, const KvCache& c, int64_t layer,
                                      const BatchRows& b, float* out) {
  const int64_t R = b.rows, H = s.heads, r = s.latent, W = s.latent + s.rope, max_ctx = c.max_ctx();
  if (R < pool_.size() && pool_.size() > 1) {
    for (int64_t i = 0; i < R; ++i) latent_row_split(s, ql, i, c, layer, b, out);
    return;
  }
  const int64_t groups = R >= 2 * pool_.size() ? 1 : std::min<int64_t>(H, 2 * pool_.size());
  const int64_t hg = (H + groups - 1) / groups;  // heads per unit
  float* tbuf = scratch(size_t(hg * max_ctx) * size_t(pool_.size()));  // [threads, hg, max_ctx]
  std::atomic<int64_t> next{0};
  auto units = [&](int t) {
    float* sc = tbuf + hg * max_ctx * t;  // [hg, max_ctx]
    for (int64_t u = next.fetch_add(1); u < R * groups; u = next.fetch_add(1)) {
      const int64_t i = u / groups, h0 = (u % groups) * hg, nh = std::min(hg, H - h0);
      if (nh <= 0) continue;
      const int64_t P = b.pos[size_t(i)] + 1;
      const LatentCache cache{DType::F32, c.at(layer, b.slot[size_t(i)], 0), W};
      latent_scores_heads(ql + (h0 * R + i) * W, R * W, nh, cache, P, W, sc, max_ctx);
      for (int64_t h = 0; h < nh; ++h) scaled_softmax(sc + h * max_ctx, P, s.scale);
      latent_weighted_sum_heads(sc, max_ctx, nh, cache, P, r, out + (h0 * R + i) * r, R * r);
    }
  };
  if (R * groups > 1) pool_.run_all(units);
  else units(0);
}

// One row (a decode step) across the pool: the threads score disjoint ranges of cache rows
// for every head, then softmax disjoint heads, then sum disjoint ranges of latent columns.
// Each thread reads its part of the cache once per pass; with units of heads every unit read
// the whole cache twice. Same bits as the units: each (head, row) score, each head's softmax
// and each column's sum is computed the same way wherever it runs (vec.h).
void CpuBackend::latent_row_split(const AttnShape& s, const float* ql, int64_t i, const KvCache& c, int64_t layer,
                                  const BatchRows& b, float* out) {
  const int64_t R = b.rows, H = s.heads, r = s.latent, W = s.latent + s.rope, max_ctx = c.max_ctx();
  const int64_t P = b.pos[size_t(i)] + 1;
  const float* base = c.at(layer, b.slot[size_t(i)], 0);  // [P, W] rows of [c | k_pe]
  float* sc = scratch(size_t(H * max_ctx));                // [H, max_ctx]
  const float* q = ql + i * W;                             // head h at q + h·R·W
  pool_.parallel_for(P, 64, [&](int64_t t0, int64_t t1, int) {
    const LatentCache rows{DType::F32, base + t0 * W, W};
    latent_scores_heads(q, R * W, H, rows, t1 - t0, W, sc + t0, max_ctx);
  });
  pool_.parallel_for(H, 1, [&](int64_t h0, int64_t h1, int) {
    for (int64_t h = h0; h < h1; ++h) scaled_softmax(sc + h * max_ctx, P, s.scale);
  });
  // Column ranges start at multiples of 64, where every kernel's column blocking restarts.
  pool_.parallel_for((r + 63) / 64, 1, [&](int64_t b0, int64_t b1, int) {
    const int64_t c0 = b0 * 64, c1 = std::min(r, b1 * 64);
    const LatentCache cols{DType::F32, base + c0, W};
    latent_weighted_sum_heads(sc, max_ctx, H, cols, P, c1 - c0, out + i * r + c0, R * r);
  });
}

void CpuBackend::attention_mla_naive(const AttnShape& s, const float* q, const float* kvx, const KvCache& c,
                                     int64_t layer, const BatchRows& b, int64_t i0, int64_t i1, float* o) {
  const int64_t H = s.heads, nope = s.nope, rd = s.rope, v = s.v, r = s.latent, qk = nope + rd, KV = nope + v;
  const int64_t max_ctx = c.max_ctx(), slot = b.slot[size_t(i0)];
  float* tbuf = scratch(size_t(max_ctx * pool_.size()));  // [threads, max_ctx]
  pool_.parallel_for((i1 - i0) * H, 1, [&](int64_t b0, int64_t e0, int t) {
    float* sc = tbuf + max_ctx * t;
    for (int64_t ih = b0; ih < e0; ++ih) {
      const int64_t i = i0 + ih / H, hd = ih % H, Pi = b.pos[size_t(i)] + 1;
      const float* qi = q + (i * H + hd) * qk;
      for (int64_t tpos = 0; tpos < Pi; ++tpos) {
        const float* k = kvx + (tpos * H + hd) * KV;
        const float* kpe = c.at(layer, slot, tpos) + r;
        sc[tpos] = (dot(qi, k, nope) + dot(qi + nope, kpe, rd)) * s.scale;
      }
      cpu::softmax(sc, Pi);
      float* oi = o + i * H * v + hd * v;
      std::fill(oi, oi + v, 0.f);
      for (int64_t tpos = 0; tpos < Pi; ++tpos) axpy(sc[tpos], kvx + (tpos * H + hd) * KV + nope, oi, v);
    }
  });
}

// ---- measuring

namespace {
class CpuProbe final : public BandwidthProbe {
 public:
  CpuProbe(ThreadPool& pool, size_t bytes) : probe_(pool, bytes) {}
  Sample read_for(double min_seconds) override {
    const ReadProbe::Sample s = probe_.read_for(min_seconds);
    return Sample{s.bytes, s.seconds, s.best_gbs};
  }
  size_t resident_bytes() const override { return probe_.resident_bytes(); }

 private:
  ReadProbe probe_;
};
}  // namespace

std::unique_ptr<BandwidthProbe> CpuBackend::bandwidth_probe(size_t bytes) {
  return std::make_unique<CpuProbe>(pool_, bytes);
}

}  // namespace cpu
}  // namespace fathom
