#include "model/dense.h"

#include "layers/ffn.h"
#include "layers/gqa.h"

namespace fathom {

RoleTable dense_roles(const ModelConfig& c, const DenseFamily& f) {
  const int64_t D = c.hidden_size, V = c.vocab_size, I = c.intermediate_size;
  const int64_t Q = c.num_attention_heads * c.head_dim, KV = c.num_key_value_heads * c.head_dim;
  const bool qkv = f.qkv_bias, ob = f.o_bias, mb = f.mlp_bias;
  using enum Role;
  using enum Scope;
  using enum WeightKind;
  const LayerSet All = LayerSet::All;
  return {
      // when  role       scope  layers kind    shape     safetensors name / GGUF name
      {true, Embed, Model, All, Matrix, {V, D}, "model.embed_tokens.weight", "token_embd.weight"},
      {true, AttnNorm, Layer, All, Vector, {D}, "model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight"},
      {true, FfnNorm, Layer, All, Vector, {D}, "model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight"},
      {true, AttnQ, Layer, All, Linear, {Q, D}, "model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight"},
      {true, AttnK, Layer, All, Linear, {KV, D}, "model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight"},
      {true, AttnV, Layer, All, Linear, {KV, D}, "model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight"},
      {true, AttnO, Layer, All, Linear, {D, Q}, "model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight"},
      {qkv, AttnQBias, Layer, All, Vector, {Q}, "model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias"},
      {qkv, AttnKBias, Layer, All, Vector, {KV}, "model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias"},
      {qkv, AttnVBias, Layer, All, Vector, {KV}, "model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias"},
      {ob, AttnOBias, Layer, All, Vector, {D}, "model.layers.{L}.self_attn.o_proj.bias", "blk.{L}.attn_output.bias"},
      {true, FfnGate, Layer, All, Linear, {I, D}, "model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight"},
      {true, FfnUp, Layer, All, Linear, {I, D}, "model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight"},
      {true, FfnDown, Layer, All, Linear, {D, I}, "model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight"},
      {mb, FfnGateBias, Layer, All, Vector, {I}, "model.layers.{L}.mlp.gate_proj.bias", "blk.{L}.ffn_gate.bias"},
      {mb, FfnUpBias, Layer, All, Vector, {I}, "model.layers.{L}.mlp.up_proj.bias", "blk.{L}.ffn_up.bias"},
      {mb, FfnDownBias, Layer, All, Vector, {D}, "model.layers.{L}.mlp.down_proj.bias", "blk.{L}.ffn_down.bias"},
      {true, FinalNorm, Model, All, Vector, {D}, "model.norm.weight", "output_norm.weight"},
      {!c.tie_word_embeddings, LmHead, Model, All, Linear, {V, D}, "lm_head.weight", "output.weight"},
  };
}

namespace {

class DenseModel : public Transformer {
 public:
  DenseModel(const std::string& dir, ModelConfig cfg, const DenseFamily& f, const LoadOpts& opts)
      : Transformer(cfg, dir, dense_roles(cfg, f), opts) {
    const Weights& w = *weights_;
    rope_ = std::make_unique<Rope>(cfg_, cfg_.head_dim, /*interleaved=*/false);
    kv_width_ = GqaAttention::cache_width(cfg_);
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      DecoderLayer L;
      L.cache_layer = l;
      L.input_norm = &w.get(Role::AttnNorm, l);
      L.post_norm = &w.get(Role::FfnNorm, l);
      GqaWeights g;
      g.q = &w.get(Role::AttnQ, l);
      g.k = &w.get(Role::AttnK, l);
      g.v = &w.get(Role::AttnV, l);
      g.o = &w.get(Role::AttnO, l);
      g.q_bias = w.find(Role::AttnQBias, l);
      g.k_bias = w.find(Role::AttnKBias, l);
      g.v_bias = w.find(Role::AttnVBias, l);
      g.o_bias = w.find(Role::AttnOBias, l);
      L.attn = std::make_unique<GqaAttention>(cfg_, g, *rope_);
      MlpWeights mw;
      mw.gate = &w.get(Role::FfnGate, l);
      mw.up = &w.get(Role::FfnUp, l);
      mw.down = &w.get(Role::FfnDown, l);
      mw.gate_bias = w.find(Role::FfnGateBias, l);
      mw.up_bias = w.find(Role::FfnUpBias, l);
      mw.down_bias = w.find(Role::FfnDownBias, l);
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
