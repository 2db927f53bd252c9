#include "model/transformer.h"

#include "layers/ops.h"

namespace fathom {

Transformer::Transformer(ModelConfig cfg, std::unique_ptr<Weights> weights, const LoadOpts& opts)
    : cfg_(std::move(cfg)), weights_(std::move(weights)), pool_(opts.threads) {}

size_t Transformer::active_bytes_per_token() const {
  size_t n = lm_head_->bytes();
  for (auto& l : layers_) n += l.attn_bytes + l.ffn->active_bytes();
  return n;
}

enum : size_t { kX = 100, kH, kOut, kNorm, kEmbedRow };

void Transformer::forward(const std::vector<SeqChunk>& batch, KvCache& cache, float* logits,
                          const ForwardOpts& opts) {
  const int64_t D = cfg_.hidden_size, V = cfg_.vocab_size;
  // Flatten the chunks into rows.
  rows_.slot.clear();
  rows_.pos.clear();
  logit_rows_.clear();
  for (const SeqChunk& c : batch) {
    if (c.n <= 0) fail("forward: empty chunk for slot {}", c.slot);
    cache.check(c.slot, c.pos + c.n);
    for (int64_t i = 0; i < c.n; ++i) {
      const int32_t tok = c.tokens[i];
      if (tok < 0 || tok >= V) fail("token id {} is out of range (vocab_size {})", tok, V);
      if (c.all_logits || i == c.n - 1) logit_rows_.push_back(int64_t(rows_.slot.size()));
      rows_.slot.push_back(c.slot);
      rows_.pos.push_back(c.pos + i);
    }
  }
  const int64_t R = rows_.rows = int64_t(rows_.slot.size());
  float* x = scratch_.get(kX, size_t(R * D));      // [R, D] residual stream
  float* h = scratch_.get(kH, size_t(R * D));      // [R, D] normed input of a sublayer
  float* out = scratch_.get(kOut, size_t(R * D));  // [R, D] sublayer output
  {
    int64_t r = 0;
    for (const SeqChunk& c : batch)
      for (int64_t i = 0; i < c.n; ++i, ++r) cpu::dequantize_row(*embed_, c.tokens[i], x + r * D);
  }
  auto trace = [&](const std::string& name, const float* p) {
    if (opts.trace) (*opts.trace)(name, p, R, D);
  };
  trace("embed", x);

  LayerCtx ctx;
  ctx.batch = &rows_;
  ctx.cache = &cache;
  ctx.pool = &pool_;
  ctx.scratch = &scratch_;
  ctx.attn = opts.attn;
  for (size_t l = 0; l < layers_.size(); ++l) {
    DecoderLayer& L = layers_[l];
    ctx.layer = int64_t(l);
    ops::rmsnorm(x, L.input_norm->data(), h, R, D, cfg_.rms_norm_eps);
    L.attn->forward(h, out, ctx);
    for (int64_t i = 0; i < R * D; ++i) x[i] += out[i];
    ops::rmsnorm(x, L.post_norm->data(), h, R, D, cfg_.rms_norm_eps);
    L.ffn->forward(h, out, R, ctx);
    for (int64_t i = 0; i < R * D; ++i) x[i] += out[i];
    trace("layer." + std::to_string(l), x);
  }
  ops::rmsnorm(x, final_norm_->data(), h, R, D, cfg_.rms_norm_eps);
  trace("final_norm", h);
  const int64_t NL = int64_t(logit_rows_.size());
  float* hn = scratch_.get(kNorm, size_t(NL * D));  // [NL, D]
  for (int64_t i = 0; i < NL; ++i) std::memcpy(hn + i * D, h + logit_rows_[size_t(i)] * D, size_t(D) * 4);
  cpu::matmul(*lm_head_, hn, NL, logits, pool_);
}

}  // namespace fathom
