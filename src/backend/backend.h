#pragma once
// The seam between the model code (layers/, model/) and the hardware. Every heavy operation
// of a forward pass is one call here, and every buffer an operation touches (activations,
// the KV cache, prepared weights) was allocated by the same backend. layers/ and model/ pass
// backend pointers around and do offset arithmetic on them, but never read or write through
// them: a backend whose memory is not the host's (CUDA) fits without touching either.
//
// Conventions: `float*` arguments are backend memory; index arrays (token ids, positions,
// slots, routing plans) are host memory, valid for the call. Every op computes each output
// row from its own input row only, so batch composition never changes a bit (ops that say
// otherwise say why). Not reentrant: one model runs one forward at a time on its backend.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "backend/routing.h"
#include "core/dtype.h"
#include "io/stored_matrix.h"

namespace fathom {

class KvCache;

// How a matrix is to be prepared. The backend picks the layout (e.g. packed for its fastest
// kernel); the values are the stored ones, or requantized to `requant` first.
struct WeightPrep {
  std::optional<DType> requant;  // Q8_0 / Q4_0: requantize where requantizes_to() says so (io/stored_matrix.h)
  bool repack = true;            // the backend may rearrange block formats for speed
  bool rows_only = false;        // read by rows only (embeddings): keep the stored layout
};

// A weight prepared by a backend (a matrix, or a vector: rows == 1). Opaque to the model
// code: only the backend that made it reads it.
class Weight {
 public:
  virtual ~Weight() = default;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  DType dtype() const { return dtype_; }
  // Bytes one full read of the weight streams (its storage, scales included).
  size_t bytes() const { return bytes_; }

 protected:
  Weight(DType t, int64_t rows, int64_t cols, size_t bytes) : rows_(rows), cols_(cols), dtype_(t), bytes_(bytes) {}
  int64_t rows_, cols_;
  DType dtype_;
  size_t bytes_;
};

// kv_b_proj [H·(nope+v), r] split for absorbed MLA: W_UKᵀ per head (q_lat = W_UKᵀ q_nope is
// an ordinary product) and W_UV per head, each head a weight of its own.
struct MlaAbsorbed {
  std::vector<std::unique_ptr<Weight>> uk_t;  // [H] of [r, nope]
  std::vector<std::unique_ptr<Weight>> uv;    // [H] of [v, r]
  std::vector<std::unique_ptr<Weight>> owners;  // storage the heads view
  size_t bytes = 0;                           // both halves, as decode reads them
};

// y[m, w.rows] = x[m, w.cols] · wᵀ
struct MatmulTask {
  const Weight* w = nullptr;
  const float* x = nullptr;  // [m, w.cols]
  int64_t m = 0;
  float* y = nullptr;        // [m, w.rows]
};

// Which rows of the batch are which tokens: row r is position pos[r] of the sequence in KV
// slot slot[r]. Rows of one chunk are consecutive, in position order. Host memory.
struct BatchRows {
  int64_t rows = 0;
  std::vector<int64_t> slot, pos;  // [rows]
};

// Rotary embedding of `heads` vectors of `dim` values per row, at the row's position.
struct RopeParams {
  const float* inv_freq = nullptr;  // [dim/2] host
  int64_t dim = 0;
  bool interleaved = false;  // pairs (2i, 2i+1) as DeepSeek; else (i, i + dim/2)
  float attn_factor = 1.0f;  // multiplies cos and sin (YaRN)
};

// A strided block of rows: rows × cols values, row i at p + i·stride.
struct RowsRef {
  float* p = nullptr;
  int64_t rows = 0, cols = 0, stride = 0;
};

// Attention over the KV cache for one layer.
struct AttnShape {
  int64_t heads = 0;
  int64_t kv_heads = 0;   // GQA: key/value heads (heads % kv_heads == 0)
  int64_t head_dim = 0;   // GQA: width of q, k, v per head
  float scale = 1.0f;     // softmax scale
  // MLA: cache row = [c (latent) | k_pe (rope)]
  int64_t latent = 0, rope = 0, nope = 0, v = 0;
};

// The routing plan of one MoE layer: which rows each selected expert takes, in expert order.
struct MoePlan {
  std::vector<int32_t> experts;  // [n_active] expert ids, ascending
  std::vector<int64_t> count;    // [n_active] rows for each
  std::vector<int32_t> src_row;  // [rows·K] token row of each dispatched row, grouped by expert
  std::vector<float> weight;     // [rows·K] its routing weight
};

// Memory read bandwidth sampled on the backend's own devices (the decode roofline).
class BandwidthProbe {
 public:
  virtual ~BandwidthProbe() = default;
  struct Sample {
    double bytes = 0, seconds = 0;
    double best_gbs = 0;  // the fastest slice
  };
  // Streams memory for at least `min_seconds` (one slice at least).
  virtual Sample read_for(double min_seconds) = 0;
  // Bytes the probe keeps resident (to take off peak-memory figures).
  virtual size_t resident_bytes() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual int threads() const = 0;
  // True when backend memory is host memory: results may then be written to and read from
  // host pointers directly (logits, traces) instead of through read().
  virtual bool host_memory() const = 0;

  // ---- memory
  // Uninitialised backend memory for n floats; released with free_floats.
  virtual float* alloc_floats(size_t n) = 0;
  virtual void free_floats(float* p) = 0;
  virtual void write(float* dst, const float* host, size_t n) = 0;  // host → backend
  virtual void read(float* host, const float* src, size_t n) = 0;   // backend → host
  virtual void fill(float* dst, float v, size_t n) = 0;

  // ---- weights
  // Bytes `prepare_matrix` will take from the weight arena for m (0: used in place).
  virtual size_t arena_bytes(const StoredMatrix& m, const WeightPrep& p) const = 0;
  // One arena for every prepared weight of a model (huge pages where the backend has them).
  virtual void reserve_arena(size_t bytes) = 0;
  virtual std::unique_ptr<Weight> prepare_matrix(const StoredMatrix& m, const WeightPrep& p) = 0;
  virtual std::unique_ptr<Weight> prepare_vector(const std::vector<float>& v) = 0;
  virtual MlaAbsorbed prepare_mla_absorbed(const Weight& kv_b, int64_t heads, int64_t nope, int64_t v) = 0;
  // The same from halves already split per head (uk_t [H·r, nope], uv [H·v, r]), as views;
  // empty when the backend cannot slice them per head (then prepare_mla_absorbed is used).
  virtual MlaAbsorbed mla_absorbed_from(const Weight& uk_t, const Weight& uv, int64_t heads) = 0;
  // Row r of a matrix weight as f32 values, into host memory [cols].
  virtual void dequantize_row(const Weight& w, int64_t r, float* host) const = 0;

  // ---- linear algebra
  virtual void matmul(const Weight& w, const float* x, int64_t m, float* y) = 0;
  // Independent products in one parallel section; each y equals matmul's bit for bit.
  virtual void matmul_many(const MatmulTask* tasks, size_t n) = 0;
  // y[i, :] += bias for m rows of bias.cols values.
  virtual void add_bias(float* y, int64_t m, const Weight& bias) = 0;
  // x[i] += y[i] over n values.
  virtual void add(float* x, const float* y, int64_t n) = 0;

  // ---- row-wise ops
  // out[r] = x[r] · rsqrt(mean(x[r]²) + eps) · w, rows of w.cols values; out may alias x.
  virtual void rmsnorm(RowsRef x, const Weight& w, RowsRef out, double eps) = 0;
  // Rotates x.rows rows in place, each `heads` vectors of p.dim values `head_stride` apart
  // starting at x.p + i·x.stride, at position pos[i] (host).
  virtual void rope(const RopeParams& p, RowsRef x, int64_t heads, int64_t head_stride, const int64_t* pos) = 0;
  // g[i] = silu(g[i]) · u[i] over n values.
  virtual void swiglu(float* g, const float* u, int64_t n) = 0;
  // In-place softmax of each of `rows` rows of n values.
  virtual void softmax(float* x, int64_t rows, int64_t n) = 0;
  // dst rows ← src rows: dst.rows × dst.cols values (shapes must agree).
  virtual void copy_rows(RowsRef src, RowsRef dst) = 0;

  // ---- embedding and gather/scatter
  // out[i] = table[tokens[i]] as f32, for n tokens (host ids, checked in range by the caller).
  virtual void embed(const Weight& table, const int32_t* tokens, int64_t n, float* out) = 0;
  // dst[j] = src[idx[j]] for n rows of `cols` values (host idx).
  virtual void gather_rows(const float* src, int64_t cols, const int32_t* idx, int64_t n, float* dst) = 0;
  // out[rows[j]] += w[j] · y[j] for j = 0..n-1 in that order (so a token's sum has a fixed
  // order whatever else is in the batch). rows, w: host.
  virtual void scatter_add(const float* y, int64_t cols, const int32_t* rows, const float* w, int64_t n,
                           float* out) = 0;

  // ---- MoE routing: expert ids and weights for each row of router logits [rows, E];
  // ids [rows, K] and weights [rows, K] land in host memory (the dispatch is planned there).
  virtual void moe_route(const RouterConfig& rc, const float* logits, int64_t rows, const Weight* bias,
                         int32_t* ids, float* weights) = 0;

  // ---- KV cache (allocated through alloc_floats, kv_cache.h) and attention
  // cache[layer, slot[i], pos[i], col0 : col0 + src.cols] = src row i
  virtual void kv_write(KvCache& c, int64_t layer, const BatchRows& b, RowsRef src, int64_t col0) = 0;
  // Cached rows 0..n-1 of slot, columns col0 .. col0 + dst.cols, into dst (dst.rows == n).
  virtual void kv_read(const KvCache& c, int64_t layer, int64_t slot, int64_t col0, RowsRef dst) = 0;
  // Grouped-query attention of q [R, heads·hd] over keys/values cached as [K | V] rows.
  // out: [R, heads·hd]. Row i attends to positions 0..pos[i] of its slot.
  virtual void attention_gqa(const AttnShape& s, const float* q, const KvCache& c, int64_t layer,
                             const BatchRows& b, float* out) = 0;
  // Absorbed MLA in the latent space: ql [H, R, latent+rope] (q_lat | q_pe per head and row)
  // scored against cached [c | k_pe] rows; out [H, R, latent] = Σ softmax · c.
  virtual void attention_mla_latent(const AttnShape& s, const float* ql, const KvCache& c, int64_t layer,
                                    const BatchRows& b, float* out) = 0;
  // Naive MLA for rows i0..i1 of the batch, one chunk of one slot: q [R, H, nope+rope];
  // kv [P, H, nope+v] expanded from the chunk's whole prefix; k_pe from the cache.
  // out: [R, H·v].
  virtual void attention_mla_naive(const AttnShape& s, const float* q, const float* kv, const KvCache& c,
                                   int64_t layer, const BatchRows& b, int64_t i0, int64_t i1, float* out) = 0;

  // ---- measuring
  virtual std::unique_ptr<BandwidthProbe> bandwidth_probe(size_t bytes) = 0;
};

struct BackendOpts {
  int threads = 0;  // 0: all cores
};

// The backend fathom runs on (today the CPU's).
std::unique_ptr<Backend> make_backend(const BackendOpts& opts);

// A grow-only activation buffer in backend memory: after the first steps of a given batch
// shape a forward allocates nothing.
class Buf {
 public:
  Buf() = default;
  ~Buf() { release(); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  Buf(Buf&& o) noexcept : be_(o.be_), p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }

  // At least n floats (contents undefined after growth).
  float* get(Backend& be, size_t n) {
    if (n > n_ || &be != be_) {
      release();
      be_ = &be;
      p_ = be.alloc_floats(n);
      n_ = n;
    }
    return p_;
  }
  float* data() const { return p_; }

 private:
  void release() {
    if (p_) be_->free_floats(p_);
    p_ = nullptr;
    n_ = 0;
  }
  Backend* be_ = nullptr;
  float* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace fathom
