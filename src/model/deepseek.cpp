// DeepSeek-V2 / V3 (and R1): MLA attention, DeepSeekMoE with shared experts, and V3's
// multi-token prediction layers.
#include "layers/ffn.h"
#include "layers/mla.h"
#include "model/transformer.h"

namespace fathom {

RoleTable deepseek_roles(const ModelConfig& c) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, V = c.vocab_size, E = c.n_routed_experts;
  const int64_t I = c.moe_intermediate_size, S = c.moe_intermediate_size * c.n_shared_experts;
  const int64_t FI = c.intermediate_size, QL = c.q_lora_rank, KVL = c.kv_lora_rank, R = c.qk_rope_head_dim;
  const bool lora = QL > 0, shared = c.n_shared_experts > 0, noaux = c.topk_method == TopkMethod::NoauxTc;
  using enum Role;
  using enum Scope;
  using enum WeightKind;
  const LayerSet All = LayerSet::All, Dense = LayerSet::Dense, Moe = LayerSet::Moe;
  return {
      // when  role          scope   layers kind    shape               safetensors name / GGUF name
      {true, Embed, Model, All, Matrix, {V, D}, "model.embed_tokens.weight", "token_embd.weight"},
      {true, AttnNorm, Layer, All, Vector, {D}, "model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight"},
      {true, FfnNorm, Layer, All, Vector, {D}, "model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight"},
      {lora, AttnQA, Layer, All, Linear, {QL, D}, "model.layers.{L}.self_attn.q_a_proj.weight", "blk.{L}.attn_q_a.weight"},
      {lora, AttnQANorm, Layer, All, Vector, {QL}, "model.layers.{L}.self_attn.q_a_layernorm.weight", "blk.{L}.attn_q_a_norm.weight"},
      {lora, AttnQB, Layer, All, Linear, {H * c.qk_head_dim(), QL}, "model.layers.{L}.self_attn.q_b_proj.weight", "blk.{L}.attn_q_b.weight"},
      {!lora, AttnQ, Layer, All, Linear, {H * c.qk_head_dim(), D}, "model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight"},
      {true, AttnKvA, Layer, All, Linear, {KVL + R, D}, "model.layers.{L}.self_attn.kv_a_proj_with_mqa.weight", "blk.{L}.attn_kv_a_mqa.weight"},
      {true, AttnKvANorm, Layer, All, Vector, {KVL}, "model.layers.{L}.self_attn.kv_a_layernorm.weight", "blk.{L}.attn_kv_a_norm.weight"},
      {true, AttnKvB, Layer, All, Linear, {H * (c.qk_nope_head_dim + c.v_head_dim), KVL}, "model.layers.{L}.self_attn.kv_b_proj.weight", "blk.{L}.attn_kv_b.weight"},
      // GGUF files split kv_b into absorbed MLA's halves (W_UKᵀ per head, W_UV per head); run as stored.
      {true, AttnUkT, Layer, All, Linear, {H * KVL, c.qk_nope_head_dim}, "model.layers.{L}.self_attn.kv_b_proj.uk_t", "blk.{L}.attn_k_b.weight", /*optional=*/true, /*gguf_only=*/true},
      {true, AttnUv, Layer, All, Linear, {H * c.v_head_dim, KVL}, "model.layers.{L}.self_attn.kv_b_proj.uv", "blk.{L}.attn_v_b.weight", /*optional=*/true, /*gguf_only=*/true},
      {true, AttnO, Layer, All, Linear, {D, H * c.v_head_dim}, "model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight"},
      {true, MoeRouter, Layer, Moe, Matrix, {E, D}, "model.layers.{L}.mlp.gate.weight", "blk.{L}.ffn_gate_inp.weight"},
      {true, MoeRouterBias, Layer, Moe, Vector, {E}, "model.layers.{L}.mlp.gate.e_score_correction_bias", "blk.{L}.exp_probs_b.bias", /*optional=*/!noaux},
      {true, ExpertGate, Expert, Moe, Linear, {I, D}, "model.layers.{L}.mlp.experts.{E}.gate_proj.weight", "blk.{L}.ffn_gate_exps.weight"},
      {true, ExpertUp, Expert, Moe, Linear, {I, D}, "model.layers.{L}.mlp.experts.{E}.up_proj.weight", "blk.{L}.ffn_up_exps.weight"},
      {true, ExpertDown, Expert, Moe, Linear, {D, I}, "model.layers.{L}.mlp.experts.{E}.down_proj.weight", "blk.{L}.ffn_down_exps.weight"},
      {shared, SharedGate, Layer, Moe, Linear, {S, D}, "model.layers.{L}.mlp.shared_experts.gate_proj.weight", "blk.{L}.ffn_gate_shexp.weight"},
      {shared, SharedUp, Layer, Moe, Linear, {S, D}, "model.layers.{L}.mlp.shared_experts.up_proj.weight", "blk.{L}.ffn_up_shexp.weight"},
      {shared, SharedDown, Layer, Moe, Linear, {D, S}, "model.layers.{L}.mlp.shared_experts.down_proj.weight", "blk.{L}.ffn_down_shexp.weight"},
      {true, FfnGate, Layer, Dense, Linear, {FI, D}, "model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight"},
      {true, FfnUp, Layer, Dense, Linear, {FI, D}, "model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight"},
      {true, FfnDown, Layer, Dense, Linear, {D, FI}, "model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight"},
      {true, MtpEmbed, Mtp, All, Matrix, {V, D}, "model.layers.{L}.embed_tokens.weight", "blk.{L}.nextn.embed_tokens.weight", /*optional=*/true},
      {true, MtpEnorm, Mtp, All, Vector, {D}, "model.layers.{L}.enorm.weight", "blk.{L}.nextn.enorm.weight"},
      {true, MtpHnorm, Mtp, All, Vector, {D}, "model.layers.{L}.hnorm.weight", "blk.{L}.nextn.hnorm.weight"},
      {true, MtpEhProj, Mtp, All, Linear, {D, 2 * D}, "model.layers.{L}.eh_proj.weight", "blk.{L}.nextn.eh_proj.weight"},
      {true, MtpHeadNorm, Mtp, All, Vector, {D}, "model.layers.{L}.shared_head.norm.weight", "blk.{L}.nextn.shared_head_norm.weight"},
      {true, MtpHead, Mtp, All, Linear, {V, D}, "model.layers.{L}.shared_head.head.weight", "blk.{L}.nextn.shared_head_head.weight", /*optional=*/true},
      {true, FinalNorm, Model, All, Vector, {D}, "model.norm.weight", "output_norm.weight"},
      {!c.tie_word_embeddings, LmHead, Model, All, Linear, {V, D}, "lm_head.weight", "output.weight"},
  };
}

namespace {

MlpWeights mlp_at(const Weights& w, Role gate, Role up, Role down, int64_t l, int64_t e = -1) {
  return MlpWeights{w.find(gate, l, e), w.find(up, l, e), w.find(down, l, e)};
}

class DeepseekModel : public Transformer {
 public:
  DeepseekModel(const std::string& dir, ModelConfig cfg, const LoadOpts& opts)
      : Transformer(cfg, dir, deepseek_roles(cfg), opts) {
    // DeepSeek rotates interleaved pairs (transformers' rope_interleave, on by default).
    rope_ = std::make_unique<Rope>(cfg_, cfg_.qk_rope_head_dim, cfg_.arch == Arch::DeepseekV2 || cfg_.rope_interleave);
    kv_width_ = MlaAttention::cache_width(cfg_);
    for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) layers_.push_back(layer(l, opts));
    build_mtp([&](int64_t l) { return layer(l, opts); });
  }

 private:
  DecoderLayer layer(int64_t l, const LoadOpts& opts) {
    const Weights& w = *weights_;
    DecoderLayer L;
    L.cache_layer = l;
    L.input_norm = &w.get(Role::AttnNorm, l);
    L.post_norm = &w.get(Role::FfnNorm, l);
    MlaWeights mw;
    mw.q_a = w.find(Role::AttnQA, l);
    mw.q_a_norm = w.find(Role::AttnQANorm, l);
    mw.q_b = w.find(Role::AttnQB, l);
    mw.q = w.find(Role::AttnQ, l);
    mw.kv_a = &w.get(Role::AttnKvA, l);
    mw.kv_a_norm = &w.get(Role::AttnKvANorm, l);
    mw.kv_b = &w.get(Role::AttnKvB, l);
    mw.uk_t = w.find(Role::AttnUkT, l);
    mw.uv = w.find(Role::AttnUv, l);
    mw.o = &w.get(Role::AttnO, l);
    L.attn = std::make_unique<MlaAttention>(*be_, cfg_, std::move(mw), *rope_);
    if (cfg_.is_moe_layer(l)) {
      MoeWeights mo;
      mo.router = &w.get(Role::MoeRouter, l);
      mo.bias = w.find(Role::MoeRouterBias, l);
      for (int64_t e = 0; e < cfg_.n_routed_experts; ++e)
        mo.experts.push_back(mlp_at(w, Role::ExpertGate, Role::ExpertUp, Role::ExpertDown, l, e));
      mo.shared = mlp_at(w, Role::SharedGate, Role::SharedUp, Role::SharedDown, l);
      L.ffn = std::make_unique<Moe>(cfg_, std::move(mo), opts.experts);
    } else {
      L.ffn = std::make_unique<Mlp>(mlp_at(w, Role::FfnGate, Role::FfnUp, Role::FfnDown, l));
    }
    return L;
  }
};

}  // namespace

std::unique_ptr<Model> build_deepseek(const std::string& dir, ModelConfig cfg, const LoadOpts& opts) {
  return std::make_unique<DeepseekModel>(dir, std::move(cfg), opts);
}

}  // namespace fathom
