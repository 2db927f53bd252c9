// Qwen2 / Qwen2.5 (and the R1-Distill-Qwen models): GQA with q/k/v biases.
#include "model/dense.h"

namespace fathom {

std::unique_ptr<Model> build_qwen2(const std::string& dir, ModelConfig cfg, const LoadOpts& opts) {
  return build_dense(dir, std::move(cfg), DenseFamily{.qkv_bias = true}, opts);
}

}  // namespace fathom
