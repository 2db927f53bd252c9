// Qwen2 / Qwen2.5 (and the R1-Distill-Qwen models): GQA with q/k/v biases.
#include "model/dense.h"

namespace fathom {

static DenseFamily qwen2_family(const ModelConfig&) { return DenseFamily{.qkv_bias = true}; }

RoleTable qwen2_roles(const ModelConfig& c) { return dense_roles(c, qwen2_family(c)); }

std::unique_ptr<Model> build_qwen2(const std::string& dir, ModelConfig cfg, const LoadOpts& opts) {
  const DenseFamily f = qwen2_family(cfg);
  return build_dense(dir, std::move(cfg), f, opts);
}

}  // namespace fathom
