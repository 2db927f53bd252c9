#pragma once
// config.json → a typed, validated ModelConfig. Every field is parsed once here; an unknown
// architecture or an unsupported value is an Error that names the field.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace fathom {

enum class Arch { DeepseekV3, DeepseekV2, Qwen2, Llama };
const char* arch_name(Arch a);

// config.json "rope_scaling": how rotary frequencies are stretched beyond the context the
// model was trained on. Absent or null: none. Fields not used by `type` keep their defaults.
struct RopeScaling {
  // "rope_type" (or the older "type"): yarn (DeepSeek-V2/V3, Qwen2 long-context variants),
  // llama3 (Llama 3.1+), linear (position interpolation), "default" or empty: none.
  enum class Type { None, Yarn, Llama3, Linear } type = Type::None;
  double factor = 1.0;  // context stretch: positions are interpolated by this much (> 0)
  // The trained context in tokens, that `factor` stretches; default max_position_embeddings.
  int64_t original_max_position_embeddings = 0;
  // yarn: dimensions that rotate more than beta_fast times over the original context keep
  // their frequency, those under beta_slow are interpolated by `factor`, a ramp between
  // (0 in config.json: the default).
  double beta_fast = 32, beta_slow = 1;
  // DeepSeek's attention-magnitude terms (0 = absent): the rotary cos/sin carry the ratio
  // mscale/mscale_all_dim, attn_scale() the mscale_all_dim part squared.
  double mscale = 0, mscale_all_dim = 0;
  double attention_factor = 0;  // cos/sin scale as given; 0 = absent: from mscale, else 0.1·ln(factor) + 1
  bool truncate = true;         // round the ramp's ends to whole dimensions (transformers' default)
  // llama3: wavelengths below original/high_freq_factor keep their frequency, above
  // original/low_freq_factor are divided by `factor`, and those between are blended.
  double low_freq_factor = 1, high_freq_factor = 4;
  // Per-pair divisors of the inverse frequency, applied after `type` (GGUF's `rope_freqs`
  // tensor, how Llama-3 scaling is stored there); empty: none.
  std::vector<float> freq_divisors;
};

// Routing works on fixed-size stack arrays; DeepSeek-V3 has 256 routed experts.
inline constexpr int64_t kMaxExperts = 4096;

enum class ScoringFunc { Softmax, Sigmoid };
enum class TopkMethod { Greedy, GroupLimitedGreedy, NoauxTc };

// The model's shape and hyperparameters (cf. DeepSeek's ModelArgs), named as in HF
// config.json unless noted. Defaults apply when a field is absent or null; from_json rejects
// a missing required field and values fathom cannot run.
struct ModelConfig {
  Arch arch = Arch::Llama;        // "model_type": deepseek_v3, deepseek_v2, qwen2 or llama
  int64_t vocab_size = 0;         // rows of embed_tokens and lm_head (required)
  int64_t hidden_size = 0;        // model width D: the residual stream and every norm (required)
  int64_t intermediate_size = 0;  // hidden width of a dense SwiGLU FFN (DeepSeek: of its dense layers) (required)
  int64_t num_hidden_layers = 0;  // transformer blocks, not counting DeepSeek's MTP layers (required)
  int64_t num_attention_heads = 0;  // query heads H (required)
  int64_t num_key_value_heads = 0;  // K/V heads of GQA, dividing H; default H (MHA). DeepSeek's MLA does not use it
  // Dense families: per-head width of q/k/v, default hidden_size / num_attention_heads.
  // DeepSeek: set to qk_rope_head_dim (the rotary width, as transformers does).
  int64_t head_dim = 0;
  // Context in tokens the config declares (default 4096); yarn's original context and factor
  // default from it.
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;     // epsilon inside every RMSNorm's square root
  double rope_theta = 10000;      // RoPE base: inverse frequency of pair i is theta^(-2i/dim)
  RopeScaling rope_scaling;       // long-context RoPE, see RopeScaling
  bool tie_word_embeddings = false;  // lm_head reuses embed_tokens (no lm_head.weight in the checkpoint)
  bool attention_bias = false;  // q/k/v bias (Qwen2 always; Llama when set)
  bool mlp_bias = false;        // bias on the FFN's gate/up/down projections (Llama only)
  int64_t bos_token_id = -1, eos_token_id = -1;  // the first, when config.json lists several; -1 = absent
  std::vector<int64_t> eos_token_ids;            // all of them: generation stops at any

  // MLA, multi-head latent attention (DeepSeek only): K and V are rebuilt per head from one
  // compressed latent of kv_lora_rank values plus a shared rotary key, which is what the KV
  // cache holds.
  int64_t q_lora_rank = 0;         // compressed query width (q_a_proj, q_b_proj); 0 or null: one q_proj
  int64_t kv_lora_rank = 0;        // width of the compressed K/V latent (required)
  int64_t qk_nope_head_dim = 0;    // per-head query/key width without RoPE (required)
  int64_t qk_rope_head_dim = 0;    // per-head query/key width with RoPE, even; one rotary key for all heads (required)
  int64_t v_head_dim = 0;          // per-head value width (required)
  bool rope_interleave = true;     // rotate pairs (x0,x1), (x2,x3) rather than halves; DeepSeek-V2 always does

  // DeepSeekMoE (DeepSeek only): routed experts chosen per token plus always-on shared experts.
  int64_t n_routed_experts = 0;       // routed experts per MoE layer; 0 or absent: a dense model
  int64_t n_shared_experts = 0;       // shared experts: one FFN n_shared_experts × moe_intermediate_size wide
  int64_t num_experts_per_tok = 0;    // routed experts each token uses (top-k), ≤ n_routed_experts
  int64_t moe_intermediate_size = 0;  // hidden width of one expert's SwiGLU FFN
  int64_t first_k_dense_replace = 0;  // the first k layers use a dense FFN instead of MoE
  int64_t moe_layer_freq = 1;         // from there on, layers l with l % moe_layer_freq == 0 are MoE
  double routed_scaling_factor = 1.0;  // the routed experts' weighted sum is multiplied by this
  ScoringFunc scoring_func = ScoringFunc::Softmax;  // router scores: softmax (V2's default) or sigmoid (V3's)
  // Top-k selection: greedy over all experts (V2 default), group_limited_greedy (the best
  // topk_group of n_group groups by their top expert), noaux_tc (V3 default: groups ranked by
  // their top-2 scores, with e_score_correction_bias added for selection only).
  TopkMethod topk_method = TopkMethod::Greedy;
  int64_t n_group = 1, topk_group = 1;  // expert groups (dividing n_routed_experts); how many a token may use
  bool norm_topk_prob = false;          // V3: renormalize the chosen experts' weights to sum to 1 (V2 never does)
  int64_t num_nextn_predict_layers = 0;  // V3 multi-token-prediction layers in the checkpoint; parsed, not run

  // FP8 checkpoints ("quantization_config" with quant_method fp8, fmt e4m3: DeepSeek-V3/R1):
  // Linear weights stored as e4m3 with an F32 `<name>_scale_inv` per block.
  bool fp8 = false;
  int64_t fp8_block_rows = 128, fp8_block_cols = 128;  // "weight_block_size": [rows, cols] of one scale

  bool is_deepseek() const { return arch == Arch::DeepseekV3 || arch == Arch::DeepseekV2; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const;
  // The softmax scale of attention (with DeepSeek's YaRN mscale where it applies).
  double attn_scale() const;

  static ModelConfig from_json(const nlohmann::json& j);
  static ModelConfig load(const std::string& model_dir);  // reads model_dir/config.json, or a .gguf file's metadata
};

// Reads and parses a JSON file (a config.json, a shard index) as it is, without checking its fields.
// Errors name the file: "<path>: cannot open", "<path>: malformed JSON: ...".
nlohmann::json read_config_json(const std::string& path);

}  // namespace fathom
