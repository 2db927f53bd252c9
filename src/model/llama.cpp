// Llama 3.x (and the R1-Distill-Llama models): GQA, llama3 rope scaling; biases only when
// the config asks for them.
#include "model/dense.h"

namespace fathom {

std::unique_ptr<Model> build_llama(const std::string& dir, ModelConfig cfg, const LoadOpts& opts) {
  DenseFamily f{.qkv_bias = cfg.attention_bias, .o_bias = cfg.attention_bias, .mlp_bias = cfg.mlp_bias};
  return build_dense(dir, std::move(cfg), f, opts);
}

}  // namespace fathom
