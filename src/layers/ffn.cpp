#include "layers/ffn.h"

namespace fathom {

size_t MlpWeights::bytes() const {
  auto b = [](const Weight* w) { return w ? w->bytes() : 0; };
  return b(gate) + b(up) + b(down);
}

void mlp_forward(const MlpWeights& w, const float* x, int64_t rows, float* out, const LayerCtx& ctx) {
  Backend& be = *ctx.be;
  MlpActs& a = ctx.acts->mlp;
  const int64_t I = w.gate->rows();
  float* g = a.gate.get(be, size_t(rows * I));  // [rows, I]
  float* u = a.up.get(be, size_t(rows * I));    // [rows, I]
  // Gate and up as one batch of products (one parallel section), biases after.
  const MatmulTask tasks[2] = {{w.gate, x, rows, g}, {w.up, x, rows, u}};
  be.matmul_many(tasks, 2);
  if (w.gate_bias) be.add_bias(g, rows, *w.gate_bias);
  if (w.up_bias) be.add_bias(u, rows, *w.up_bias);
  be.swiglu(g, u, rows * I);
  linear(be, *w.down, g, rows, out, w.down_bias);
}

void Mlp::forward(const float* h, float* out, int64_t rows, const LayerCtx& ctx) {
  mlp_forward(w_, h, rows, out, ctx);
}

}  // namespace fathom
