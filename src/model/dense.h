#pragma once
// The dense decoder families (Llama, Qwen2): GQA attention + SwiGLU MLP. The family files
// say which biases their checkpoints carry.
#include "model/roles.h"
#include "model/transformer.h"

namespace fathom {

struct DenseFamily {
  bool qkv_bias = false;  // q/k/v projections have biases
  bool o_bias = false;    // o_proj has a bias
  bool mlp_bias = false;  // gate/up/down have biases
};

RoleTable dense_roles(const ModelConfig& c, const DenseFamily& f);
std::unique_ptr<Model> build_dense(const std::string& dir, ModelConfig cfg, const DenseFamily& fam,
                                   const LoadOpts& opts);

}  // namespace fathom
