// DeepSeek-V2 / V3 (and R1): MLA attention, DeepSeekMoE with shared experts.
#include <fmt/format.h>

#include "layers/ffn.h"
#include "layers/mla.h"
#include "model/transformer.h"

namespace fathom {

std::vector<WeightSpec> deepseek_weight_table(const ModelConfig& c) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, V = c.vocab_size;
  std::vector<WeightSpec> t;
  t.push_back({"model.embed_tokens.weight", {V, D}, WeightKind::Matrix});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    t.push_back({p + "input_layernorm.weight", {D}, WeightKind::Vector});
    t.push_back({p + "post_attention_layernorm.weight", {D}, WeightKind::Vector});
    const std::string a = p + "self_attn.";
    if (c.q_lora_rank > 0) {
      t.push_back({a + "q_a_proj.weight", {c.q_lora_rank, D}});
      t.push_back({a + "q_a_layernorm.weight", {c.q_lora_rank}, WeightKind::Vector});
      t.push_back({a + "q_b_proj.weight", {H * c.qk_head_dim(), c.q_lora_rank}});
    } else {
      t.push_back({a + "q_proj.weight", {H * c.qk_head_dim(), D}});
    }
    t.push_back({a + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, D}});
    t.push_back({a + "kv_a_layernorm.weight", {c.kv_lora_rank}, WeightKind::Vector});
    t.push_back({a + "kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank}});
    t.push_back({a + "o_proj.weight", {D, H * c.v_head_dim}});
    const std::string m = p + "mlp.";
    if (c.is_moe_layer(l)) {
      const int64_t E = c.n_routed_experts, I = c.moe_intermediate_size;
      t.push_back({m + "gate.weight", {E, D}, WeightKind::Matrix});
      t.push_back({m + "gate.e_score_correction_bias", {E}, WeightKind::Vector,
                   /*optional=*/c.topk_method != TopkMethod::NoauxTc});
      for (int64_t e = 0; e < E; ++e) {
        const std::string x = fmt::format("{}experts.{}.", m, e);
        t.push_back({x + "gate_proj.weight", {I, D}});
        t.push_back({x + "up_proj.weight", {I, D}});
        t.push_back({x + "down_proj.weight", {D, I}});
      }
      if (c.n_shared_experts > 0) {
        const int64_t S = I * c.n_shared_experts;
        t.push_back({m + "shared_experts.gate_proj.weight", {S, D}});
        t.push_back({m + "shared_experts.up_proj.weight", {S, D}});
        t.push_back({m + "shared_experts.down_proj.weight", {D, S}});
      }
    } else {
      t.push_back({m + "gate_proj.weight", {c.intermediate_size, D}});
      t.push_back({m + "up_proj.weight", {c.intermediate_size, D}});
      t.push_back({m + "down_proj.weight", {D, c.intermediate_size}});
    }
  }
  t.push_back({"model.norm.weight", {D}, WeightKind::Vector});
  if (!c.tie_word_embeddings) t.push_back({"lm_head.weight", {V, D}});
  return t;
}

namespace {

MlpWeights mlp_at(const Weights& w, const std::string& p) {
  MlpWeights m;
  m.gate = &w.linear(p + "gate_proj.weight");
  m.up = &w.linear(p + "up_proj.weight");
  m.down = &w.linear(p + "down_proj.weight");
  return m;
}

class DeepseekModel : public Transformer {
 public:
  DeepseekModel(const std::string& dir, ModelConfig cfg, const LoadOpts& opts)
      : Transformer(cfg, std::make_unique<Weights>(dir, cfg, deepseek_weight_table(cfg), opts), opts) {
    const ModelConfig& c = cfg_;
    const Weights& w = *weights_;
    // DeepSeek rotates interleaved pairs (transformers' rope_interleave, on by default).
    rope_ = std::make_unique<Rope>(c, c.qk_rope_head_dim, c.arch == Arch::DeepseekV2 || c.rope_interleave);
    kv_width_ = MlaAttention::cache_width(c);
    embed_ = &w.linear("model.embed_tokens.weight");
    final_norm_ = &w.vec("model.norm.weight");
    lm_head_ = c.tie_word_embeddings ? embed_ : &w.linear("lm_head.weight");
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l), a = p + "self_attn.", m = p + "mlp.";
      DecoderLayer L;
      L.input_norm = &w.vec(p + "input_layernorm.weight");
      L.post_norm = &w.vec(p + "post_attention_layernorm.weight");
      MlaWeights mw;
      if (c.q_lora_rank > 0) {
        mw.q_a = &w.linear(a + "q_a_proj.weight");
        mw.q_a_norm = &w.vec(a + "q_a_layernorm.weight");
        mw.q_b = &w.linear(a + "q_b_proj.weight");
      } else {
        mw.q = &w.linear(a + "q_proj.weight");
      }
      mw.kv_a = &w.linear(a + "kv_a_proj_with_mqa.weight");
      mw.kv_a_norm = &w.vec(a + "kv_a_layernorm.weight");
      mw.kv_b = &w.linear(a + "kv_b_proj.weight");
      mw.o = &w.linear(a + "o_proj.weight");
      auto attn = std::make_unique<MlaAttention>(c, std::move(mw), *rope_);
      L.attn_bytes = attn->active_bytes();
      L.attn = std::move(attn);
      if (c.is_moe_layer(l)) {
        MoeWeights mo;
        mo.router = &w.linear(m + "gate.weight");
        if (w.has(m + "gate.e_score_correction_bias")) mo.bias = &w.vec(m + "gate.e_score_correction_bias");
        for (int64_t e = 0; e < c.n_routed_experts; ++e) mo.experts.push_back(mlp_at(w, fmt::format("{}experts.{}.", m, e)));
        if (c.n_shared_experts > 0) mo.shared = mlp_at(w, m + "shared_experts.");
        L.ffn = std::make_unique<Moe>(c, std::move(mo));
      } else {
        L.ffn = std::make_unique<Mlp>(mlp_at(w, m));
      }
      layers_.push_back(std::move(L));
    }
  }
};

}  // namespace

std::unique_ptr<Model> build_deepseek(const std::string& dir, ModelConfig cfg, const LoadOpts& opts) {
  return std::make_unique<DeepseekModel>(dir, std::move(cfg), opts);
}

}  // namespace fathom
