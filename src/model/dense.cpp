#include "model/dense.h"

#include <fmt/format.h>

#include "layers/ffn.h"
#include "layers/gqa.h"

namespace fathom {

std::vector<WeightSpec> dense_weight_table(const ModelConfig& c, const DenseFamily& f) {
  const int64_t D = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t Q = c.num_attention_heads * c.head_dim, KV = c.num_key_value_heads * c.head_dim;
  std::vector<WeightSpec> t;
  t.push_back({"model.embed_tokens.weight", {V, D}, WeightKind::Matrix});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l), a = p + "self_attn.", m = p + "mlp.";
    t.push_back({p + "input_layernorm.weight", {D}, WeightKind::Vector});
    t.push_back({p + "post_attention_layernorm.weight", {D}, WeightKind::Vector});
    t.push_back({a + "q_proj.weight", {Q, D}});
    t.push_back({a + "k_proj.weight", {KV, D}});
    t.push_back({a + "v_proj.weight", {KV, D}});
    t.push_back({a + "o_proj.weight", {D, Q}});
    if (f.qkv_bias) {
      t.push_back({a + "q_proj.bias", {Q}, WeightKind::Vector});
      t.push_back({a + "k_proj.bias", {KV}, WeightKind::Vector});
      t.push_back({a + "v_proj.bias", {KV}, WeightKind::Vector});
    }
    if (f.o_bias) t.push_back({a + "o_proj.bias", {D}, WeightKind::Vector});
    t.push_back({m + "gate_proj.weight", {I, D}});
    t.push_back({m + "up_proj.weight", {I, D}});
    t.push_back({m + "down_proj.weight", {D, I}});
    if (f.mlp_bias) {
      t.push_back({m + "gate_proj.bias", {I}, WeightKind::Vector});
      t.push_back({m + "up_proj.bias", {I}, WeightKind::Vector});
      t.push_back({m + "down_proj.bias", {D}, WeightKind::Vector});
    }
  }
  t.push_back({"model.norm.weight", {D}, WeightKind::Vector});
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {V, D}});
  return t;
}

namespace {

class DenseModel : public Transformer {
 public:
  DenseModel(const std::string& dir, ModelConfig cfg, const DenseFamily& f, const LoadOpts& opts)
      : Transformer(cfg, std::make_unique<Weights>(dir, cfg, dense_weight_table(cfg, f), opts), opts) {
    const ModelConfig& c = cfg_;
    const Weights& w = *weights_;
    rope_ = std::make_unique<Rope>(c, c.head_dim, /*interleaved=*/false);
    kv_width_ = GqaAttention::cache_width(c);
    embed_ = &w.linear("model.embed_tokens.weight");
    final_norm_ = &w.vec("model.norm.weight");
    lm_head_ = c.tie_word_embeddings ? embed_ : &w.linear("lm_head.weight");
    auto opt_vec = [&](const std::string& n, bool present) { return present ? &w.vec(n) : nullptr; };
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l), a = p + "self_attn.", m = p + "mlp.";
      DecoderLayer L;
      L.input_norm = &w.vec(p + "input_layernorm.weight");
      L.post_norm = &w.vec(p + "post_attention_layernorm.weight");
      GqaWeights g;
      g.q = &w.linear(a + "q_proj.weight");
      g.k = &w.linear(a + "k_proj.weight");
      g.v = &w.linear(a + "v_proj.weight");
      g.o = &w.linear(a + "o_proj.weight");
      g.q_bias = opt_vec(a + "q_proj.bias", f.qkv_bias);
      g.k_bias = opt_vec(a + "k_proj.bias", f.qkv_bias);
      g.v_bias = opt_vec(a + "v_proj.bias", f.qkv_bias);
      g.o_bias = opt_vec(a + "o_proj.bias", f.o_bias);
      auto attn = std::make_unique<GqaAttention>(c, g, *rope_);
      L.attn_bytes = attn->active_bytes();
      L.attn = std::move(attn);
      MlpWeights mw;
      mw.gate = &w.linear(m + "gate_proj.weight");
      mw.up = &w.linear(m + "up_proj.weight");
      mw.down = &w.linear(m + "down_proj.weight");
      mw.gate_bias = opt_vec(m + "gate_proj.bias", f.mlp_bias);
      mw.up_bias = opt_vec(m + "up_proj.bias", f.mlp_bias);
      mw.down_bias = opt_vec(m + "down_proj.bias", f.mlp_bias);
      L.ffn = std::make_unique<Mlp>(mw);
      layers_.push_back(std::move(L));
    }
  }
};

}  // namespace

std::unique_ptr<Model> build_dense(const std::string& dir, ModelConfig cfg, const DenseFamily& f,
                                   const LoadOpts& opts) {
  return std::make_unique<DenseModel>(dir, std::move(cfg), f, opts);
}

}  // namespace fathom
