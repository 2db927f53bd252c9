#include "model/transformer.h"

#include <cmath>
#include <cstring>

namespace fathom {

Transformer::Transformer(ModelConfig cfg, const std::string& dir, const RoleTable& table, const LoadOpts& opts)
    : cfg_(std::move(cfg)), be_(make_backend({opts.threads})),
      weights_(std::make_unique<Weights>(*be_, dir, cfg_, table, opts)) {
  embed_ = &weights_->get(Role::Embed);
  final_norm_ = &weights_->get(Role::FinalNorm);
  lm_head_ = cfg_.tie_word_embeddings ? embed_ : &weights_->get(Role::LmHead);
}

size_t Transformer::active_bytes_per_token() const {
  size_t n = lm_head_->bytes();
  for (auto& l : layers_) n += l.attn->active_bytes() + l.ffn->active_bytes();
  return n;
}

void Transformer::build_mtp(const std::function<DecoderLayer(int64_t layer)>& decoder_layer) {
  const Weights& w = *weights_;
  for (int64_t l = cfg_.num_hidden_layers; l < cfg_.num_hidden_layers + cfg_.num_nextn_predict_layers; ++l) {
    if (!w.has_layer(l)) continue;
    MtpModule m;
    m.enorm = &w.get(Role::MtpEnorm, l);
    m.hnorm = &w.get(Role::MtpHnorm, l);
    m.eh_proj = &w.get(Role::MtpEhProj, l);
    const Weight* embed = w.find(Role::MtpEmbed, l);
    const Weight* head = w.find(Role::MtpHead, l);
    m.embed = embed ? embed : embed_;
    m.head_norm = &w.get(Role::MtpHeadNorm, l);
    m.head = head ? head : lm_head_;
    m.layer = decoder_layer(l);
    m.layer.cache_layer = int64_t(mtp_.size());  // its layer in the MTP cache (make_mtp_cache)
    mtp_.push_back(std::move(m));
  }
}

void Transformer::add_rows(int64_t slot, int64_t pos, const int32_t* tokens, int64_t n, bool all_logits,
                           const KvCache& cache) {
  const int64_t V = cfg_.vocab_size;
  if (n <= 0) fail("forward: empty chunk for slot {}", slot);
  cache.check(slot, pos + n);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t tok = tokens[i];
    if (tok < 0 || tok >= V) fail("token id {} is out of range (vocab_size {})", tok, V);
    if (all_logits || i == n - 1) logit_rows_.push_back(int32_t(rows_.slot.size()));
    rows_.slot.push_back(slot);
    rows_.pos.push_back(pos + i);
    tokens_.push_back(tok);
  }
}

void Transformer::trace(const ForwardOpts& opts, const std::string& name, const float* x) {
  if (!opts.trace) return;
  const int64_t R = rows_.rows, D = cfg_.hidden_size;
  if (be_->host_memory()) return (*opts.trace)(name, x, R, D);
  trace_buf_.resize(size_t(R * D));
  be_->read(trace_buf_.data(), x, size_t(R * D));
  (*opts.trace)(name, trace_buf_.data(), R, D);
}

void Transformer::forward(const std::vector<SeqChunk>& batch, KvCache& cache, float* logits,
                          const ForwardOpts& opts) {
  Backend& be = *be_;
  const int64_t D = cfg_.hidden_size;
  // Flatten the chunks into rows.
  rows_.slot.clear();
  rows_.pos.clear();
  tokens_.clear();
  logit_rows_.clear();
  for (const SeqChunk& c : batch) add_rows(c.slot, c.pos, c.tokens, c.n, c.all_logits, cache);
  const int64_t R = rows_.rows = int64_t(rows_.slot.size());
  float* x = acts_.stack.x.get(be, size_t(R * D));  // [R, D] residual stream
  be.embed(*embed_, tokens_.data(), R, x);
  trace(opts, "embed", x);

  const LayerCtx ctx = layer_ctx(cache, opts.attn);
  for (size_t l = 0; l < layers_.size(); ++l) {
    decoder_layer_forward(layers_[l], x, D, cfg_.rms_norm_eps, ctx);
    trace(opts, "layer." + std::to_string(l), x);
  }
  float* h = acts_.stack.h.get(be, size_t(R * D));  // [R, D]
  be.rmsnorm({x, R, D, D}, *final_norm_, {h, R, D, D}, cfg_.rms_norm_eps);
  trace(opts, "final_norm", h);
  if (opts.final_hidden) be.read(opts.final_hidden, h, size_t(R * D));
  project_logits(*lm_head_, h, logits);
}

LayerCtx Transformer::layer_ctx(KvCache& cache, AttnMode attn) {
  LayerCtx ctx;
  ctx.be = be_.get();
  ctx.batch = &rows_;
  ctx.cache = &cache;
  ctx.acts = &acts_;
  ctx.attn = attn;
  return ctx;
}

void Transformer::project_logits(const Weight& head, const float* h, float* logits) {
  Backend& be = *be_;
  const int64_t D = cfg_.hidden_size, V = cfg_.vocab_size;
  const int64_t NL = int64_t(logit_rows_.size());
  float* hn = acts_.stack.head_in.get(be, size_t(NL * D));  // [NL, D]
  be.gather_rows(h, D, logit_rows_.data(), NL, hn);
  if (be.host_memory()) {
    be.matmul(head, hn, NL, logits);
  } else {
    float* l = logits_buf_.get(be, size_t(NL * V));  // [NL, V]
    be.matmul(head, hn, NL, l);
    be.read(logits, l, size_t(NL * V));
  }
  // NaN or Inf logits (damaged weights, an overflow) would be sampled as arbitrary tokens;
  // stop the sequence with an error instead. A scan of NL·V floats is noise next to lm_head.
  // Branch-free over the exponent bits (vectorizes); the first bad value is found only on failure.
  for (int64_t r = 0; r < NL; ++r) {
    const float* row = logits + r * V;
    uint32_t bad = 0;
    for (int64_t i = 0; i < V; ++i) {
      uint32_t b;
      std::memcpy(&b, row + i, 4);
      bad |= uint32_t((b & 0x7f800000u) == 0x7f800000u);
    }
    if (!bad) continue;
    for (int64_t i = 0; i < V; ++i)
      if (!std::isfinite(row[i]))
        fail("forward: the logits are not finite ({} for token {}, slot {}, position {}): the weights or the "
             "activations hold NaN or Inf",
             row[i], i, rows_.slot[size_t(logit_rows_[size_t(r)])], rows_.pos[size_t(logit_rows_[size_t(r)])]);
  }
}

}  // namespace fathom
