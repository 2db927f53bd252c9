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

struct RopeScaling {
  enum class Type { None, Yarn, Llama3, Linear } type = Type::None;
  double factor = 1.0;
  int64_t original_max_position_embeddings = 0;
  // yarn
  double beta_fast = 32, beta_slow = 1;
  double mscale = 0, mscale_all_dim = 0;  // 0 = absent
  double attention_factor = 0;            // 0 = absent (derived)
  bool truncate = true;
  // llama3
  double low_freq_factor = 1, high_freq_factor = 4;
};

// Routing works on fixed-size stack arrays; DeepSeek-V3 has 256 routed experts.
inline constexpr int64_t kMaxExperts = 4096;

enum class ScoringFunc { Softmax, Sigmoid };
enum class TopkMethod { Greedy, GroupLimitedGreedy, NoauxTc };

struct ModelConfig {
  Arch arch = Arch::Llama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // dense families
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v bias (Qwen2 always; Llama when set)
  bool mlp_bias = false;
  int64_t bos_token_id = -1, eos_token_id = -1;  // the first, when config.json lists several
  std::vector<int64_t> eos_token_ids;               // all of them

  // MLA (DeepSeek)
  int64_t q_lora_rank = 0;  // 0: no q-LoRA (q_proj)
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0, qk_rope_head_dim = 0, v_head_dim = 0;
  bool rope_interleave = true;

  // DeepSeekMoE
  int64_t n_routed_experts = 0;  // 0: dense model
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t first_k_dense_replace = 0;
  int64_t moe_layer_freq = 1;
  double routed_scaling_factor = 1.0;
  ScoringFunc scoring_func = ScoringFunc::Softmax;
  TopkMethod topk_method = TopkMethod::Greedy;
  int64_t n_group = 1, topk_group = 1;
  bool norm_topk_prob = false;
  int64_t num_nextn_predict_layers = 0;

  // FP8 checkpoints (quantization_config)
  bool fp8 = false;
  int64_t fp8_block_rows = 128, fp8_block_cols = 128;

  bool is_deepseek() const { return arch == Arch::DeepseekV3 || arch == Arch::DeepseekV2; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  bool is_moe_layer(int64_t layer) const;
  // The softmax scale of attention (with DeepSeek's YaRN mscale where it applies).
  double attn_scale() const;

  static ModelConfig from_json(const nlohmann::json& j);
  static ModelConfig load(const std::string& model_dir);  // reads model_dir/config.json
};

// Reads and parses a JSON file (a config.json) as it is, without checking its fields.
// Errors name the file: "<path>: cannot open", "<path>: malformed JSON: ...".
nlohmann::json read_config_json(const std::string& path);

}  // namespace fathom
