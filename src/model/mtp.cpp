// DeepSeek's multi-token prediction module at inference: row i joins the embedding of the
// token after position i with the hidden state at position i, runs the module's decoder layer
// over the rows (causal, its own KV cache, rope at position i) and predicts one token further.
#include "model/transformer.h"

namespace fathom {

void Transformer::mtp_forward(int64_t module, const std::vector<MtpChunk>& batch, KvCache& cache, float* logits,
                              float* hidden_out, const ForwardOpts& opts) {
  if (module < 0 || module >= int64_t(mtp_.size()))
    fail("mtp_forward: module {} does not exist ({} modules)", module, mtp_.size());
  const MtpModule& m = mtp_[size_t(module)];
  Backend& be = *be_;
  const int64_t D = cfg_.hidden_size;
  const double eps = cfg_.rms_norm_eps;
  rows_.slot.clear();
  rows_.pos.clear();
  tokens_.clear();
  logit_rows_.clear();
  for (const MtpChunk& c : batch) add_rows(c.slot, c.pos, c.tokens, c.n, c.all_logits, cache);
  const int64_t R = rows_.rows = int64_t(rows_.slot.size());

  float* e = acts_.stack.out.get(be, size_t(R * D));  // [R, D] embeddings of the next tokens
  float* hid = acts_.stack.h.get(be, size_t(R * D));  // [R, D] incoming hidden states
  be.embed(*m.embed, tokens_.data(), R, e);
  int64_t r0 = 0;
  for (const MtpChunk& c : batch) {
    be.write(hid + r0 * D, c.hidden, size_t(c.n * D));
    r0 += c.n;
  }
  // The embedding half comes first in eh_proj's input.
  float* cat = mtp_cat_.get(be, size_t(R * 2 * D));  // [R, 2D]
  be.rmsnorm({e, R, D, D}, *m.enorm, {cat, R, D, 2 * D}, eps);
  be.rmsnorm({hid, R, D, D}, *m.hnorm, {cat + D, R, D, 2 * D}, eps);
  float* x = acts_.stack.x.get(be, size_t(R * D));  // [R, D] the module's residual stream
  be.matmul(*m.eh_proj, cat, R, x);
  trace(opts, "mtp.eh_proj", x);

  const LayerCtx ctx = layer_ctx(cache, opts.attn);
  decoder_layer_forward(m.layer, x, D, eps, ctx);
  trace(opts, "mtp.block_out", x);
  if (hidden_out) be.read(hidden_out, x, size_t(R * D));
  float* h = acts_.stack.h.get(be, size_t(R * D));  // [R, D]
  be.rmsnorm({x, R, D, D}, *m.head_norm, {h, R, D, D}, eps);
  project_logits(*m.head, h, logits);
}

}  // namespace fathom
