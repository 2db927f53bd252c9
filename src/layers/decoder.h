#pragma once
// One decoder layer: x += attn(norm(x)); x += ffn(norm(x)). The main stack runs it for each
// layer, and DeepSeek's MTP block runs the same function on its own layer.
#include <memory>

#include "layers/common.h"

namespace fathom {

struct DecoderLayer {
  const Weight* input_norm = nullptr;  // [D]
  const Weight* post_norm = nullptr;   // [D]
  std::unique_ptr<AttnLayer> attn;
  std::unique_ptr<FfnLayer> ffn;
  int64_t cache_layer = 0;  // its layer in the KV cache
};

// x: [rows, D] residual stream, updated in place (ctx.acts->stack.h and .out are used).
void decoder_layer_forward(const DecoderLayer& L, float* x, int64_t D, double eps, LayerCtx ctx);

}  // namespace fathom
