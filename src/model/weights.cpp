#include "model/weights.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <unistd.h>

#include "core/error.h"

namespace fathom {

static std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

static void to_f32(const TensorView& t, std::vector<float>& out) {
  out.resize(size_t(t.numel()));
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t h;
    switch (t.dtype) {
      case DType::F32: std::memcpy(&out[i], p + 4 * i, 4); break;
      case DType::BF16: std::memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_f32(h); break;
      case DType::F16: std::memcpy(&h, p + 2 * i, 2); out[i] = f16_to_f32(h); break;
      default: fail("tensor '{}': dtype {} is not allowed here", t.name, dtype_name(t.dtype));
    }
  }
}

static std::optional<DType> parse_quant(const std::string& q) {
  if (q.empty() || q == "none") return std::nullopt;
  if (q == "q8_0") return DType::Q8_0;
  if (q == "q4_0") return DType::Q4_0;
  fail("unknown --quant '{}' (supported: q8_0, q4_0)", q);
}

namespace {
// A progress bar on stderr when it is a terminal.
struct Progress {
  bool on;
  size_t total, done = 0;
  int last = -1;
  Progress(bool want, size_t total) : on(want && isatty(2)), total(total ? total : 1) {}
  void step() {
    ++done;
    if (!on) return;
    int pct = int(100 * done / total);
    if (pct == last) return;
    last = pct;
    int w = 40, fill = w * pct / 100;
    std::fprintf(stderr, "\rloading [%.*s%*s] %3d%%", fill, "########################################", w - fill,
                 "", pct);
    if (done == total) std::fprintf(stderr, "\n");
  }
};

// The matrix as stored, FP8 with its checked block scales.
MatrixSource source_of(const TensorStore& store, const ModelConfig& cfg, const WeightSpec& spec, const TensorView& t) {
  MatrixSource m;
  m.dtype = t.dtype;
  m.rows = spec.shape[0];
  m.cols = spec.shape[1];
  m.data = t.data;
  switch (t.dtype) {
    case DType::F32: case DType::BF16: case DType::F16: case DType::Q8_0: case DType::Q4_0: break;
    case DType::F8_E4M3: {
      if (cfg.fp8_block_rows != cfg.fp8_block_cols)
        fail("tensor '{}': non-square FP8 blocks {}x{} are not supported", spec.name, cfg.fp8_block_rows,
             cfg.fp8_block_cols);
      const int64_t blk = cfg.fp8_block_rows;
      const std::string sname = spec.name + "_scale_inv";
      const TensorView* s = store.find(sname);
      if (!s) fail("tensor '{}' is F8_E4M3 but '{}' is missing", spec.name, sname);
      std::vector<int64_t> want = {(m.rows + blk - 1) / blk, (m.cols + blk - 1) / blk};
      if (s->shape != want)
        fail("tensor '{}': shape {} disagrees with its weight, which implies {}", sname, s->shape_str(),
             shape_str(want));
      if (s->dtype != DType::F32) fail("tensor '{}': dtype {} (expected F32)", sname, dtype_name(s->dtype));
      if (reinterpret_cast<uintptr_t>(s->data) % alignof(float)) fail("tensor '{}': data is not 4-byte aligned", sname);
      m.block_scale = static_cast<const float*>(s->data);
      m.block = blk;
      break;
    }
    default: fail("tensor '{}': dtype {} cannot be used for a weight matrix", spec.name, dtype_name(t.dtype));
  }
  return m;
}
}  // namespace

Weights::Weights(Backend& be, const std::string& dir, const ModelConfig& cfg, const RoleTable& table,
                 const LoadOpts& opts)
    : store_(TensorStore::open(dir)) {
  const auto quant = parse_quant(opts.quant);
  std::vector<WeightSpec> specs = expand(table, cfg);
  // An MTP layer is loaded whole when the checkpoint has it (many checkpoints drop it).
  for (const WeightSpec& s : specs)
    if (s.mtp && s.role == Role::MtpEhProj && store_.find(s.name)) mtp_layers_.push_back(s.layer);
  std::erase_if(specs, [&](const WeightSpec& s) {
    return (s.mtp && !has_layer(s.layer)) || (s.expert >= 0 && !opts.experts.holds(s.expert));
  });
  auto prep = [&](const WeightSpec& s) {
    WeightPrep p;
    if (s.kind == WeightKind::Linear) p.requant = quant;
    p.repack = opts.repack;
    p.rows_only = s.kind == WeightKind::Matrix;
    return p;
  };
  // Weights that become the backend's own memory live in one arena.
  size_t arena = 0;
  for (const WeightSpec& s : specs)
    if (const TensorView* t = store_.find(s.name); t && t->shape == s.shape && s.kind != WeightKind::Vector) {
      const MatrixSource m{t->dtype, s.shape[0], s.shape[1], t->data};
      arena += be.arena_bytes(m, prep(s));
    }
  be.reserve_arena(arena);
  Progress progress(opts.progress, specs.size());
  for (const WeightSpec& spec : specs) {
    progress.step();
    const TensorView* t = store_.find(spec.name);
    if (!t) {
      if (spec.mtp ? spec.row_optional : spec.optional) continue;
      fail("{}: missing tensor '{}' (expected shape {})", dir, spec.name, shape_str(spec.shape));
    }
    if (t->shape != spec.shape)
      fail("tensor '{}': shape {} disagrees with config.json, which implies {}", spec.name, t->shape_str(),
           shape_str(spec.shape));
    const uint64_t k = key(spec.role, spec.layer, spec.expert);
    if (spec.kind == WeightKind::Vector) {
      std::vector<float> v;
      to_f32(*t, v);
      w_[k] = be.prepare_vector(v);
      bytes_ += t->nbytes;
      continue;
    }
    const MatrixSource m = source_of(store_, cfg, spec, *t);
    const WeightPrep p = prep(spec);
    const bool own = be.arena_bytes(m, p) > 0;  // the source is no longer read
    std::unique_ptr<Weight> w = be.prepare_matrix(m, p);
    if (own) store_.release(*t);
    bytes_ += w->bytes();
    if (w->dtype() == DType::F8_E4M3)
      bytes_ += size_t(((m.rows + m.block - 1) / m.block) * ((m.cols + m.block - 1) / m.block)) * 4;
    w_[k] = std::move(w);
  }
}

const Weight* Weights::find(Role r, int64_t layer, int64_t expert) const {
  auto it = w_.find(key(r, layer, expert));
  return it == w_.end() ? nullptr : it->second.get();
}

const Weight& Weights::get(Role r, int64_t layer, int64_t expert) const {
  const Weight* w = find(r, layer, expert);
  if (!w) fail("weight {} (layer {}, expert {}) was not loaded", role_name(r), layer, expert);
  return *w;
}

bool Weights::has_layer(int64_t layer) const {
  return std::find(mtp_layers_.begin(), mtp_layers_.end(), layer) != mtp_layers_.end();
}

}  // namespace fathom
