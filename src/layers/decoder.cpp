#include "layers/decoder.h"

namespace fathom {

void decoder_layer_forward(const DecoderLayer& L, float* x, int64_t D, double eps, LayerCtx ctx) {
  Backend& be = *ctx.be;
  const int64_t R = ctx.batch->rows;
  float* h = ctx.acts->stack.h.get(be, size_t(R * D));      // [R, D]
  float* out = ctx.acts->stack.out.get(be, size_t(R * D));  // [R, D]
  ctx.layer = L.cache_layer;
  be.rmsnorm({x, R, D, D}, *L.input_norm, {h, R, D, D}, eps);
  L.attn->forward(h, out, ctx);
  be.add(x, out, R * D);
  be.rmsnorm({x, R, D, D}, *L.post_norm, {h, R, D, D}, eps);
  L.ffn->forward(h, out, R, ctx);
  be.add(x, out, R * D);
}

}  // namespace fathom
