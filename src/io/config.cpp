#include "io/config.h"
#include "io/gguf_config.h"

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"

namespace fathom {
using nlohmann::json;

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::DeepseekV3: return "deepseek_v3";
    case Arch::DeepseekV2: return "deepseek_v2";
    case Arch::Qwen2: return "qwen2";
    case Arch::Llama: return "llama";
  }
  return "?";
}

namespace {

// Typed field readers: absent or null gives the default; a wrong type names the field.
// A JSON number is range-checked before it is converted (casting 1e30 to int64_t is UB).
int64_t to_int(const json& v, const std::string& key) {
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > uint64_t(INT64_MAX))
      fail("config.json: field '{}' is out of range (got {})", key, v.dump());
    return int64_t(v.get<uint64_t>());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::floor(d) != d) fail("config.json: field '{}' must be an integer (got {})", key, v.dump());
    // [-2^63, 2^63): the doubles that convert to int64_t exactly.
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
      fail("config.json: field '{}' is out of range (got {})", key, v.dump());
    return int64_t(d);
  }
  fail("config.json: field '{}' must be an integer", key);
}

int64_t get_int(const json& j, const char* key, int64_t def, bool required = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail("config.json: missing required field '{}'", key);
    return def;
  }
  return to_int(*it, key);
}

// Every size is bounded so that the products the role tables form (vocab × hidden,
// heads × head width, experts × layers) stay far from overflowing int64_t.
void in_range(const char* name, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi) fail("config.json: field '{}' must be between {} and {} (got {})", name, lo, hi, v);
}
constexpr int64_t kMaxWidth = int64_t(1) << 20;     // hidden, intermediate, lora and head widths
constexpr int64_t kMaxHeads = int64_t(1) << 16;
constexpr int64_t kMaxLayers = int64_t(1) << 16;    // real models have ~100; weights key layers in 24 bits
constexpr int64_t kMaxTokenId = (int64_t(1) << 31) - 1;
constexpr int64_t kMaxContext = int64_t(1) << 40;

double get_num(const json& j, const char* key, double def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) fail("config.json: field '{}' must be a number", key);
  return it->get<double>();
}

bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) fail("config.json: field '{}' must be true or false", key);
  return it->get<bool>();
}

std::string get_str(const json& j, const char* key, const std::string& def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_string()) fail("config.json: field '{}' must be a string", key);
  return it->get<std::string>();
}

// A token id, or the first of a list of them; -1 when absent.
int64_t token_id(const json& v, const char* key) {
  if (v.is_null()) return -1;
  const int64_t id = to_int(v, key);
  in_range(key, id, -1, kMaxTokenId);
  return id;
}

int64_t first_id(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return -1;
  if (it->is_array()) return it->empty() ? -1 : token_id((*it)[0], key);
  return token_id(*it, key);
}

RopeScaling parse_rope(const json& j, const ModelConfig& c) {
  RopeScaling r;
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) return r;
  if (!it->is_object()) fail("config.json: field 'rope_scaling' must be an object or null");
  const json& s = *it;
  std::string type = get_str(s, "rope_type", get_str(s, "type", ""));
  r.factor = get_num(s, "factor", 1.0);
  r.original_max_position_embeddings = get_int(s, "original_max_position_embeddings", c.max_position_embeddings);
  in_range("rope_scaling.original_max_position_embeddings", r.original_max_position_embeddings, 1, kMaxContext);
  if (type == "yarn") {
    r.type = RopeScaling::Type::Yarn;
    if (!s.contains("factor") || s["factor"].is_null()) {
      if (!s.contains("original_max_position_embeddings"))
        fail("config.json: rope_scaling.factor or original_max_position_embeddings is required for yarn");
      r.factor = double(c.max_position_embeddings) / double(r.original_max_position_embeddings);
    }
    r.beta_fast = get_num(s, "beta_fast", 32);
    r.beta_slow = get_num(s, "beta_slow", 1);
    if (r.beta_fast == 0) r.beta_fast = 32;
    if (r.beta_slow == 0) r.beta_slow = 1;
    r.mscale = get_num(s, "mscale", 0);
    r.mscale_all_dim = get_num(s, "mscale_all_dim", 0);
    r.attention_factor = get_num(s, "attention_factor", 0);
    r.truncate = get_bool(s, "truncate", true);
  } else if (type == "llama3") {
    r.type = RopeScaling::Type::Llama3;
    r.low_freq_factor = get_num(s, "low_freq_factor", 1);
    r.high_freq_factor = get_num(s, "high_freq_factor", 4);
    if (r.high_freq_factor == r.low_freq_factor)
      fail("config.json: rope_scaling.high_freq_factor must differ from low_freq_factor");
  } else if (type == "linear") {
    r.type = RopeScaling::Type::Linear;
  } else if (type == "default" || type.empty()) {
    r.type = RopeScaling::Type::None;
  } else {
    fail("config.json: unsupported rope_scaling type '{}' (supported: yarn, llama3, linear, default)", type);
  }
  if (r.type != RopeScaling::Type::None && !(r.factor > 0))
    fail("config.json: rope_scaling.factor must be positive");
  return r;
}

}  // namespace

static double yarn_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; }

double ModelConfig::attn_scale() const {
  if (is_deepseek()) {
    double s = 1.0 / std::sqrt(double(qk_head_dim()));
    // DeepSeek folds the YaRN mscale (from mscale_all_dim) into the softmax scale, squared:
    // the rotary cos/sin carry only the mscale / mscale_all_dim ratio.
    if (rope_scaling.type == RopeScaling::Type::Yarn && rope_scaling.mscale_all_dim != 0) {
      double m = yarn_mscale(rope_scaling.factor, rope_scaling.mscale_all_dim);
      s *= m * m;
    }
    return s;
  }
  return 1.0 / std::sqrt(double(head_dim));
}

bool ModelConfig::is_moe_layer(int64_t l) const {
  return n_routed_experts > 0 && l >= first_k_dense_replace && l % moe_layer_freq == 0;
}

ModelConfig ModelConfig::from_json(const json& j) {
  if (!j.is_object()) fail("config.json: not a JSON object");
  ModelConfig c;
  std::string mt = get_str(j, "model_type", "");
  if (mt.empty()) fail("config.json: missing field 'model_type'");
  if (mt == "deepseek_v3") c.arch = Arch::DeepseekV3;
  else if (mt == "deepseek_v2") c.arch = Arch::DeepseekV2;
  else if (mt == "qwen2") c.arch = Arch::Qwen2;
  else if (mt == "llama") c.arch = Arch::Llama;
  else fail("config.json: unsupported model_type '{}' (supported: deepseek_v3, deepseek_v2, qwen2, llama)", mt);

  c.vocab_size = get_int(j, "vocab_size", 0, true);
  c.hidden_size = get_int(j, "hidden_size", 0, true);
  c.intermediate_size = get_int(j, "intermediate_size", 0, true);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", 0, true);
  c.num_attention_heads = get_int(j, "num_attention_heads", 0, true);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", c.num_attention_heads);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", 4096);
  c.rms_norm_eps = get_num(j, "rms_norm_eps", 1e-6);
  c.rope_theta = get_num(j, "rope_theta", 10000);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false);
  c.bos_token_id = first_id(j, "bos_token_id");
  c.eos_token_id = first_id(j, "eos_token_id");
  if (auto e = j.find("eos_token_id"); e != j.end() && e->is_array()) {
    for (const json& v : *e)
      if (v.is_number() && token_id(v, "eos_token_id") >= 0) c.eos_token_ids.push_back(token_id(v, "eos_token_id"));
  } else if (c.eos_token_id >= 0) {
    c.eos_token_ids.push_back(c.eos_token_id);
  }
  std::string act = get_str(j, "hidden_act", "silu");
  if (act != "silu") fail("config.json: unsupported hidden_act '{}' (supported: silu)", act);

  auto width = [](const char* name, int64_t v) { in_range(name, v, 1, kMaxWidth); };
  in_range("vocab_size", c.vocab_size, 1, int64_t(1) << 31);
  width("hidden_size", c.hidden_size);
  in_range("num_hidden_layers", c.num_hidden_layers, 1, kMaxLayers);
  in_range("num_attention_heads", c.num_attention_heads, 1, kMaxHeads);
  in_range("num_key_value_heads", c.num_key_value_heads, 1, kMaxHeads);
  // 0 would make every position "beyond the context" and yarn's default factor divide by 0.
  in_range("max_position_embeddings", c.max_position_embeddings, 1, kMaxContext);
  if (!(c.rms_norm_eps > 0)) fail("config.json: field 'rms_norm_eps' must be positive");
  if (!(c.rope_theta > 0)) fail("config.json: field 'rope_theta' must be positive");

  if (c.is_deepseek()) {
    c.q_lora_rank = get_int(j, "q_lora_rank", 0);
    c.kv_lora_rank = get_int(j, "kv_lora_rank", 0, true);
    c.qk_nope_head_dim = get_int(j, "qk_nope_head_dim", 0, true);
    c.qk_rope_head_dim = get_int(j, "qk_rope_head_dim", 0, true);
    c.v_head_dim = get_int(j, "v_head_dim", 0, true);
    c.rope_interleave = get_bool(j, "rope_interleave", true);
    c.attention_bias = get_bool(j, "attention_bias", false);
    if (c.attention_bias) fail("config.json: attention_bias=true is not supported for {}", mt);
    in_range("q_lora_rank", c.q_lora_rank, 0, kMaxWidth);
    width("kv_lora_rank", c.kv_lora_rank);
    width("qk_nope_head_dim", c.qk_nope_head_dim);
    width("qk_rope_head_dim", c.qk_rope_head_dim);
    width("v_head_dim", c.v_head_dim);
    if (c.qk_rope_head_dim % 2) fail("config.json: field 'qk_rope_head_dim' must be even");
    c.head_dim = c.qk_rope_head_dim;  // the rotary dimension, as transformers sets it

    c.n_routed_experts = get_int(j, "n_routed_experts", 0);
    in_range("n_routed_experts", c.n_routed_experts, 0, kMaxExperts);
    // null or absent means dense; an explicit 0 next to the MoE fields is a broken config,
    // which would otherwise surface as a missing dense FFN tensor.
    if (c.n_routed_experts == 0 && j.contains("n_routed_experts") && !j["n_routed_experts"].is_null() &&
        get_int(j, "num_experts_per_tok", 0) > 0)
      fail("config.json: field 'n_routed_experts' is 0 but num_experts_per_tok is {} (null means a dense model)",
           get_int(j, "num_experts_per_tok", 0));
    if (c.n_routed_experts > 0) {
      c.n_shared_experts = get_int(j, "n_shared_experts", 0);
      c.num_experts_per_tok = get_int(j, "num_experts_per_tok", 0, true);
      c.moe_intermediate_size = get_int(j, "moe_intermediate_size", 0, true);
      c.first_k_dense_replace = get_int(j, "first_k_dense_replace", 0);
      c.moe_layer_freq = get_int(j, "moe_layer_freq", 1);
      c.routed_scaling_factor = get_num(j, "routed_scaling_factor", 1.0);
      c.n_group = get_int(j, "n_group", 1);
      c.topk_group = get_int(j, "topk_group", 1);
      c.norm_topk_prob = get_bool(j, "norm_topk_prob", false);
      std::string sf = get_str(j, "scoring_func", c.arch == Arch::DeepseekV3 ? "sigmoid" : "softmax");
      if (sf == "softmax") c.scoring_func = ScoringFunc::Softmax;
      else if (sf == "sigmoid") c.scoring_func = ScoringFunc::Sigmoid;
      else fail("config.json: unsupported scoring_func '{}' (supported: softmax, sigmoid)", sf);
      std::string tm = get_str(j, "topk_method", c.arch == Arch::DeepseekV3 ? "noaux_tc" : "greedy");
      if (tm == "greedy") c.topk_method = TopkMethod::Greedy;
      else if (tm == "group_limited_greedy") c.topk_method = TopkMethod::GroupLimitedGreedy;
      else if (tm == "noaux_tc") c.topk_method = TopkMethod::NoauxTc;
      else fail("config.json: unsupported topk_method '{}' (supported: greedy, group_limited_greedy, noaux_tc)", tm);
      in_range("num_experts_per_tok", c.num_experts_per_tok, 1, kMaxExperts);
      width("moe_intermediate_size", c.moe_intermediate_size);
      in_range("first_k_dense_replace", c.first_k_dense_replace, 0, kMaxLayers);
      in_range("moe_layer_freq", c.moe_layer_freq, 1, kMaxLayers);
      in_range("n_group", c.n_group, 1, kMaxExperts);
      in_range("topk_group", c.topk_group, 1, kMaxExperts);
      in_range("n_shared_experts", c.n_shared_experts, 0, kMaxExperts);
      if (!(c.routed_scaling_factor > 0))
        fail("config.json: field 'routed_scaling_factor' must be positive");
      if (c.num_experts_per_tok > c.n_routed_experts)
        fail("config.json: num_experts_per_tok {} exceeds n_routed_experts {}", c.num_experts_per_tok, c.n_routed_experts);
      if (c.n_routed_experts % c.n_group)
        fail("config.json: n_routed_experts {} is not divisible by n_group {}", c.n_routed_experts, c.n_group);
      if (c.topk_group > c.n_group) fail("config.json: topk_group {} exceeds n_group {}", c.topk_group, c.n_group);
      if (c.topk_method == TopkMethod::NoauxTc && c.n_routed_experts / c.n_group < 2)
        fail("config.json: noaux_tc routing needs at least 2 experts per group");
      if (c.topk_method != TopkMethod::Greedy &&
          c.topk_group * (c.n_routed_experts / c.n_group) < c.num_experts_per_tok)
        fail("config.json: topk_group {} groups hold fewer than num_experts_per_tok {} experts", c.topk_group,
             c.num_experts_per_tok);
    }
    c.num_nextn_predict_layers = get_int(j, "num_nextn_predict_layers", 0);
    in_range("num_nextn_predict_layers", c.num_nextn_predict_layers, 0, kMaxLayers);
  } else {
    c.head_dim = get_int(j, "head_dim", 0);
    in_range("head_dim", c.head_dim, 0, kMaxWidth);
    if (c.head_dim == 0) {
      if (c.hidden_size % c.num_attention_heads)
        fail("config.json: hidden_size {} is not divisible by num_attention_heads {}", c.hidden_size,
             c.num_attention_heads);
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    if (c.head_dim % 2) fail("config.json: field 'head_dim' must be even");
    if (c.num_attention_heads % c.num_key_value_heads)
      fail("config.json: num_attention_heads {} is not divisible by num_key_value_heads {}", c.num_attention_heads,
           c.num_key_value_heads);
    c.attention_bias = c.arch == Arch::Qwen2 ? true : get_bool(j, "attention_bias", false);
    c.mlp_bias = get_bool(j, "mlp_bias", false);
    if (c.arch == Arch::Qwen2 && get_bool(j, "use_sliding_window", false))
      fail("config.json: use_sliding_window=true is not supported");
  }
  width("intermediate_size", c.intermediate_size);
  c.rope_scaling = parse_rope(j, c);

  auto q = j.find("quantization_config");
  if (q != j.end() && !q->is_null()) {
    if (!q->is_object()) fail("config.json: field 'quantization_config' must be an object");
    std::string method = get_str(*q, "quant_method", "");
    if (method != "fp8") fail("config.json: unsupported quantization_config.quant_method '{}' (supported: fp8)", method);
    std::string fmt = get_str(*q, "fmt", "e4m3");
    if (fmt != "e4m3") fail("config.json: unsupported quantization_config.fmt '{}' (supported: e4m3)", fmt);
    c.fp8 = true;
    if (q->contains("weight_block_size")) {
      const json& b = (*q)["weight_block_size"];
      if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer())
        fail("config.json: quantization_config.weight_block_size must be two positive integers");
      c.fp8_block_rows = to_int(b[0], "quantization_config.weight_block_size");
      c.fp8_block_cols = to_int(b[1], "quantization_config.weight_block_size");
      in_range("quantization_config.weight_block_size", c.fp8_block_rows, 1, kMaxWidth);
      in_range("quantization_config.weight_block_size", c.fp8_block_cols, 1, kMaxWidth);
    }
  }
  return c;
}

json read_config_json(const std::string& path) {
  const std::string text = read_file(path);  // a regular file only: a FIFO would block forever
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: malformed JSON: {}", path, e.what());
  }
}

ModelConfig ModelConfig::load(const std::string& dir) {
  if (is_gguf_path(dir)) return gguf_model_config(GgufModel::open(dir));
  return from_json(read_config_json((std::filesystem::path(dir) / "config.json").string()));
}

}  // namespace fathom
