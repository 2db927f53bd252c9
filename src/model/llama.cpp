// Llama 3.x (and the R1-Distill-Llama models): GQA, llama3 rope scaling; biases only when
// the config asks for them.
#include "model/dense.h"

namespace fathom {

static DenseFamily llama_family(const ModelConfig& c) {
  return DenseFamily{.qkv_bias = c.attention_bias, .o_bias = c.attention_bias, .mlp_bias = c.mlp_bias};
}

RoleTable llama_roles(const ModelConfig& c) { return dense_roles(c, llama_family(c)); }

std::unique_ptr<Model> build_llama(const std::string& dir, ModelConfig cfg, const LoadOpts& opts) {
  const DenseFamily f = llama_family(cfg);
  return build_dense(dir, std::move(cfg), f, opts);
}

}  // namespace fathom
