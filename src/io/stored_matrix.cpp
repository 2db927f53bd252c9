#include "io/stored_matrix.h"

#include <string>
#include <vector>

#include "core/error.h"

namespace fathom {

StoredMatrix stored_matrix(const TensorStore& store, const ModelConfig& cfg, const TensorView& t) {
  if (t.shape.size() != 2) fail("tensor '{}': shape {} is not a matrix", t.name, t.shape_str());
  StoredMatrix m;
  m.dtype = t.dtype;
  m.rows = t.shape[0];
  m.cols = t.shape[1];
  m.data = t.data;
  m.tensor = &t;
  switch (t.dtype) {
    case DType::F32: case DType::BF16: case DType::F16: case DType::Q8_0: case DType::Q4_0: return m;
    case DType::F8_E4M3: break;
    default:
      if (is_ggml_block(t.dtype)) return m;
      fail("tensor '{}': dtype {} cannot be used for a weight matrix", t.name, dtype_name(t.dtype));
  }
  if (cfg.fp8_block_rows != cfg.fp8_block_cols)
    fail("tensor '{}': non-square FP8 blocks {}x{} are not supported", t.name, cfg.fp8_block_rows,
         cfg.fp8_block_cols);
  const int64_t blk = cfg.fp8_block_rows;
  const std::string sname = t.name + "_scale_inv";
  const TensorView* s = store.find(sname);
  if (!s) fail("tensor '{}' is F8_E4M3 but '{}' is missing", t.name, sname);
  const std::vector<int64_t> want = {(m.rows + blk - 1) / blk, (m.cols + blk - 1) / blk};
  if (s->shape != want)
    fail("tensor '{}': shape {} disagrees with its weight, which implies [{}, {}]", sname, s->shape_str(), want[0],
         want[1]);
  if (s->dtype != DType::F32) fail("tensor '{}': dtype {} (expected F32)", sname, dtype_name(s->dtype));
  if (reinterpret_cast<uintptr_t>(s->data) % alignof(float)) fail("tensor '{}': data is not 4-byte aligned", sname);
  m.block_scale = static_cast<const float*>(s->data);
  m.block = blk;
  m.scale = s;
  return m;
}

}  // namespace fathom
