#pragma once
// The CPU backend: weights as cpu::WeightView (packed for the VNNI/AVX2 kernels where that
// pays), host memory for buffers, one thread pool for every op.
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/matmul.h"
#include "backend/cpu/packed.h"
#include "core/thread_pool.h"

namespace fathom::cpu {

// A weight the CPU backend prepared: a view, and the storage it owns when it is not in the
// arena or the mapped checkpoint.
class CpuWeight : public Weight {
 public:
  explicit CpuWeight(const WeightView& v) : Weight(v.dtype, v.rows, v.cols, v.bytes()), view(v) {}
  WeightView view;
  std::vector<float> vec;  // a vector's values (view points here)
  AlignedBytes owned;      // storage of its own (absorbed MLA halves)
};

inline const WeightView& view_of(const Weight& w) { return static_cast<const CpuWeight&>(w).view; }
// A stored matrix as the kernels read it (row-major, FP8 with its block scales).
inline WeightView view_of(const StoredMatrix& m) {
  return WeightView{m.dtype, m.rows, m.cols, m.data, m.block_scale, m.block, Layout::Rows};
}

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const BackendOpts& o);
  const char* name() const override { return "cpu"; }
  int threads() const override { return pool_.size(); }
  bool host_memory() const override { return true; }
  ThreadPool& pool() { return pool_; }

  float* alloc_floats(size_t n) override;
  void free_floats(float* p) override;
  void write(float* dst, const float* host, size_t n) override;
  void read(float* host, const float* src, size_t n) override;
  void fill(float* dst, float v, size_t n) override;

  size_t arena_bytes(const StoredMatrix& m, const WeightPrep& p) const override;
  void reserve_arena(size_t bytes) override;
  std::unique_ptr<Weight> prepare_matrix(const StoredMatrix& m, const WeightPrep& p) override;
  std::unique_ptr<Weight> prepare_vector(const std::vector<float>& v) override;
  MlaAbsorbed mla_absorbed_from(const Weight& uk_t, const Weight& uv, int64_t heads) override;
  MlaAbsorbed prepare_mla_absorbed(const Weight& kv_b, int64_t heads, int64_t nope, int64_t v) override;
  void dequantize_row(const Weight& w, int64_t r, float* host) const override;

  void matmul(const Weight& w, const float* x, int64_t m, float* y) override;
  void matmul_many(const fathom::MatmulTask* tasks, size_t n) override;
  void add_bias(float* y, int64_t m, const Weight& bias) override;
  void add(float* x, const float* y, int64_t n) override;

  void rmsnorm(RowsRef x, const Weight& w, RowsRef out, double eps) override;
  void rope(const RopeParams& p, RowsRef x, int64_t heads, int64_t head_stride, const int64_t* pos) override;
  void swiglu(float* g, const float* u, int64_t n) override;
  void softmax(float* x, int64_t rows, int64_t n) override;
  void copy_rows(RowsRef src, RowsRef dst) override;

  void embed(const Weight& table, const int32_t* tokens, int64_t n, float* out) override;
  void gather_rows(const float* src, int64_t cols, const int32_t* idx, int64_t n, float* dst) override;
  void scatter_add(const float* y, int64_t cols, const int32_t* rows, const float* w, int64_t n,
                   float* out) override;
  void moe_route(const RouterConfig& rc, const float* logits, int64_t rows, const Weight* bias, int32_t* ids,
                 float* weights) override;

  void kv_write(KvCache& c, int64_t layer, const BatchRows& b, RowsRef src, int64_t col0) override;
  void kv_read(const KvCache& c, int64_t layer, int64_t slot, int64_t col0, RowsRef dst) override;
  void attention_gqa(const AttnShape& s, const float* q, const KvCache& c, int64_t layer, const BatchRows& b,
                     float* out) override;
  void attention_mla_latent(const AttnShape& s, const float* ql, const KvCache& c, int64_t layer,
                            const BatchRows& b, float* out) override;
  void attention_mla_naive(const AttnShape& s, const float* q, const float* kv, const KvCache& c, int64_t layer,
                           const BatchRows& b, int64_t i0, int64_t i1, float* out) override;

  std::unique_ptr<BandwidthProbe> bandwidth_probe(size_t bytes) override;

 private:
  struct Plan {
    DType dtype;
    bool requant = false, pack = false;
  };
  Plan plan(const StoredMatrix& m, const WeightPrep& p) const;
  uint8_t* take(size_t n);
  void latent_row_split(const AttnShape& s, const float* ql, int64_t i, const KvCache& c, int64_t layer,
                        const BatchRows& b, float* out);
  float* scratch(size_t n);

  ThreadPool pool_;
  AlignedBytes arena_;  // every packed or requantized weight, huge pages
  size_t arena_size_ = 0, arena_used_ = 0;
  std::vector<cpu::MatmulTask> tasks_;  // reused by matmul_many
  std::vector<float> scratch_;          // per-thread attention scores, grow-only
  std::vector<float> route_tmp_;        // [2·E]
};

}  // namespace fathom::cpu
