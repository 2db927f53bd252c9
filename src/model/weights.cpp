#include "model/weights.h"

#include <cstdio>
#include <unistd.h>

#include "backend/cpu/quantize.h"
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
}  // namespace

Weights::Weights(const std::string& dir, const ModelConfig& cfg, const std::vector<WeightSpec>& table,
                 const LoadOpts& opts)
    : store_(TensorStore::open(dir)) {
  const auto quant = parse_quant(opts.quant);
  ThreadPool pool(opts.threads);  // requantizing or packing a large model is worth all cores
  // What becomes of a Linear weight stored as `stored`: requantized to *quant at load, then
  // packed for the CPU kernels. Checked shapes and dtypes come later; this only plans memory.
  struct Plan {
    DType dtype;
    bool requant, pack;
  };
  auto plan = [&](const WeightSpec& spec, DType stored) {
    Plan p{stored, false, false};
    if (spec.kind != WeightKind::Linear || spec.shape.size() != 2 || spec.shape[1] % 32) return p;
    p.requant = quant && stored != *quant;
    if (p.requant) p.dtype = *quant;
    p.pack = opts.repack && cpu::packing_pays(p.dtype);
    return p;
  };
  // Weights that become fathom's own memory live in one huge-page arena (64-byte slices).
  size_t arena_bytes = 0;
  auto owned_bytes = [&](const WeightSpec& spec, const Plan& p) -> size_t {
    const size_t n = p.pack ? cpu::packed_bytes(p.dtype, spec.shape[0], spec.shape[1])
                            : p.requant ? dtype_bytes(p.dtype, spec.shape[1]) * size_t(spec.shape[0]) : 0;
    return (n + 63) / 64 * 64;
  };
  for (const WeightSpec& spec : table)
    if (const TensorView* t = store_.find(spec.name); t && t->shape == spec.shape)
      arena_bytes += owned_bytes(spec, plan(spec, t->dtype));
  if (arena_bytes) arena_ = cpu::alloc_huge(arena_bytes);
  size_t arena_used = 0;
  auto take = [&](size_t n) {
    uint8_t* p = arena_.get() + arena_used;
    arena_used += (n + 63) / 64 * 64;
    FATHOM_CHECK(arena_used <= arena_bytes, "weights arena overflow");
    return p;
  };
  Progress progress(opts.progress, table.size());
  for (const WeightSpec& spec : table) {
    progress.step();
    const TensorView* t = store_.find(spec.name);
    if (!t) {
      if (spec.optional) continue;
      fail("{}: missing tensor '{}' (expected shape {})", dir, spec.name, shape_str(spec.shape));
    }
    if (t->shape != spec.shape)
      fail("tensor '{}': shape {} disagrees with config.json, which implies {}", spec.name, t->shape_str(),
           shape_str(spec.shape));
    if (spec.kind == WeightKind::Vector) {
      to_f32(*t, vec_[spec.name]);
      bytes_ += t->nbytes;
      continue;
    }
    cpu::WeightView w;
    w.dtype = t->dtype;
    w.rows = spec.shape[0];
    w.cols = spec.shape[1];
    w.data = t->data;
    switch (t->dtype) {
      case DType::F32: case DType::BF16: case DType::F16: case DType::Q8_0: case DType::Q4_0: break;
      case DType::F8_E4M3: {
        if (cfg.fp8_block_rows != cfg.fp8_block_cols)
          fail("tensor '{}': non-square FP8 blocks {}x{} are not supported", spec.name, cfg.fp8_block_rows,
               cfg.fp8_block_cols);
        const int64_t blk = cfg.fp8_block_rows;
        const std::string sname = spec.name + "_scale_inv";
        const TensorView* s = store_.find(sname);
        if (!s) fail("tensor '{}' is F8_E4M3 but '{}' is missing", spec.name, sname);
        std::vector<int64_t> want = {(w.rows + blk - 1) / blk, (w.cols + blk - 1) / blk};
        if (s->shape != want)
          fail("tensor '{}': shape {} disagrees with its weight, which implies {}", sname, s->shape_str(),
               shape_str(want));
        if (s->dtype != DType::F32)
          fail("tensor '{}': dtype {} (expected F32)", sname, dtype_name(s->dtype));
        if (reinterpret_cast<uintptr_t>(s->data) % alignof(float))
          fail("tensor '{}': data is not 4-byte aligned", sname);
        w.block_scale = static_cast<const float*>(s->data);
        w.block = blk;
        break;
      }
      default:
        fail("tensor '{}': dtype {} cannot be used for a weight matrix", spec.name, dtype_name(t->dtype));
    }
    const Plan p = plan(spec, w.dtype);
    if (p.requant) {
      cpu::WeightView q = w;
      q.dtype = p.dtype;
      q.block_scale = nullptr;
      const size_t rb = dtype_bytes(p.dtype, w.cols);
      cpu::AlignedBytes tmp;  // the row-major result, when packing follows
      uint8_t* buf = p.pack ? (tmp = cpu::alloc_aligned(rb * size_t(w.rows))).get() : take(rb * size_t(w.rows));
      pool.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1, int) {
        std::vector<float> row(static_cast<size_t>(w.cols));  // [cols]
        for (int64_t r = r0; r < r1; ++r) {
          cpu::dequantize_row(w, r, row.data());
          cpu::quantize_row(p.dtype, row.data(), w.cols, buf + rb * size_t(r));
        }
      });
      q.data = buf;
      store_.release(*t);
      w = q;
      if (p.pack) w = cpu::pack16(w, take(cpu::packed_bytes(w.dtype, w.rows, w.cols)), &pool);
    } else if (p.pack) {
      w = cpu::pack16(w, take(cpu::packed_bytes(w.dtype, w.rows, w.cols)), &pool);
      store_.release(*t);
    }
    bytes_ += w.bytes();
    if (w.block_scale) bytes_ += size_t(((w.rows + w.block - 1) / w.block) * ((w.cols + w.block - 1) / w.block)) * 4;
    linear_[spec.name] = w;
  }
}

const cpu::WeightView& Weights::linear(const std::string& name) const {
  auto it = linear_.find(name);
  if (it == linear_.end()) fail("weight '{}' was not loaded", name);
  return it->second;
}

const std::vector<float>& Weights::vec(const std::string& name) const {
  auto it = vec_.find(name);
  if (it == vec_.end()) fail("weight '{}' was not loaded", name);
  return it->second;
}

std::vector<float> Weights::dequantized(const std::string& name) const {
  const cpu::WeightView& w = linear(name);
  std::vector<float> out(size_t(w.rows * w.cols));  // [rows, cols]
  for (int64_t r = 0; r < w.rows; ++r) cpu::dequantize_row(w, r, out.data() + r * w.cols);
  return out;
}

}  // namespace fathom
