// GGUF metadata -> config.json fields, tokenizer.json and tokenizer_config.json, so the rest of
// fathom reads a GGUF model through the same validated parsers as an HF checkpoint.
#include "io/gguf_config.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace fathom {

using json = nlohmann::json;

bool is_gguf_path(const std::string& path) {
  return path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

namespace {

// Reads `{arch}.key` with the accessor's type rules.
struct ArchKeys {
  const GgufMetadata& md;
  std::string arch;
  std::string k(std::string_view key) const { return arch + "." + std::string(key); }
  bool has(std::string_view key) const { return md.has(k(key)); }
  int64_t i(std::string_view key) const { return md.get_i64(k(key)); }
  int64_t i(std::string_view key, int64_t fb) const { return md.get_i64(k(key), fb); }
  double f(std::string_view key, double fb) const { return has(key) ? md.get_f64(k(key)) : fb; }
  bool b(std::string_view key, bool fb) const { return md.get_bool(k(key), fb); }
};

int64_t vocab_size(const GgufModel& m, const ArchKeys& a) {
  if (a.has("vocab_size")) return a.i("vocab_size");
  if (m.metadata().has("tokenizer.ggml.tokens")) return int64_t(m.metadata().get_array_str("tokenizer.ggml.tokens").size());
  return m.get("token_embd.weight").ne.at(1);
}

void deepseek_fields(const GgufModel& m, const ArchKeys& a, json& j) {
  const int64_t rope = a.i("rope.dimension_count");
  // The split-attention form writes the MLA head sizes under *_mla (key_length then holds
  // kv_lora + rope); the older unsplit form has only key_length / value_length.
  const bool mla = a.has("attention.key_length_mla");
  const int64_t key = mla ? a.i("attention.key_length_mla") : a.i("attention.key_length");
  const int64_t val = mla ? a.i("attention.value_length_mla") : a.i("attention.value_length");
  const int64_t q_lora = a.i("attention.q_lora_rank", 0);
  const int64_t gating = a.i("expert_gating_func", 1);
  if (gating != 1 && gating != 2) fail("{}: expert_gating_func {} (expected 1 softmax or 2 sigmoid)", a.md.what(), gating);
  const bool sigmoid = gating == 2;
  const int64_t groups = a.i("expert_group_count", 1), groups_used = a.i("expert_group_used_count", 1);
  const bool bias = m.find("blk." + std::to_string(a.i("leading_dense_block_count", 0)) + ".exp_probs_b.bias");
  j["model_type"] = sigmoid || bias ? "deepseek_v3" : "deepseek_v2";
  j["q_lora_rank"] = q_lora > 0 ? json(q_lora) : json(nullptr);
  j["kv_lora_rank"] = a.i("attention.kv_lora_rank");
  j["qk_rope_head_dim"] = rope;
  j["qk_nope_head_dim"] = key - rope;
  j["v_head_dim"] = val;
  j["rope_interleave"] = true;  // GGML "normal" rope on adjacent pairs
  j["n_routed_experts"] = a.i("expert_count", 0);
  j["num_experts_per_tok"] = a.i("expert_used_count", 0);
  j["n_shared_experts"] = a.i("expert_shared_count", 0);
  j["moe_intermediate_size"] = a.i("expert_feed_forward_length", 0);
  j["first_k_dense_replace"] = a.i("leading_dense_block_count", 0);
  j["moe_layer_freq"] = 1;
  j["routed_scaling_factor"] = a.f("expert_weights_scale", 1.0);
  j["norm_topk_prob"] = a.b("expert_weights_norm", false);
  j["scoring_func"] = sigmoid ? "sigmoid" : "softmax";
  j["n_group"] = groups;
  j["topk_group"] = groups_used;
  j["topk_method"] = bias ? "noaux_tc" : groups > 1 ? "group_limited_greedy" : "greedy";
  j["num_nextn_predict_layers"] = a.i("nextn_predict_layers", 0);
}

json rope_scaling(const ArchKeys& a, bool deepseek) {
  const std::string type = a.md.get_str(a.k("rope.scaling.type"), "");
  if (type.empty() || type == "none") return nullptr;
  json r;
  r["type"] = type;
  r["factor"] = a.f("rope.scaling.factor", 1.0);
  if (a.has("rope.scaling.original_context_length")) r["original_max_position_embeddings"] = a.i("rope.scaling.original_context_length");
  if (type == "yarn") {
    r["beta_fast"] = a.f("rope.scaling.yarn_beta_fast", 32);
    r["beta_slow"] = a.f("rope.scaling.yarn_beta_slow", 1);
    // The file carries only yarn_log_multiplier (0.1 * mscale_all_dim); GGML's DeepSeek graph
    // takes mscale = mscale_all_dim, so cos/sin are unscaled and the softmax scale carries it.
    if (deepseek) {
      const double m = a.f("rope.scaling.yarn_log_multiplier", 0) / 0.1;
      r["mscale"] = m;
      r["mscale_all_dim"] = m;
      r["attention_factor"] = 1.0;
    }
  }
  return r;
}

}  // namespace

json gguf_config_json(const GgufModel& m) {
  const GgufMetadata& md = m.metadata();
  const ArchKeys a{md, m.architecture()};
  json j;
  const bool deepseek = a.arch == "deepseek2";
  if (!deepseek && a.arch != "qwen2" && a.arch != "llama")
    fail("{}: architecture '{}' is not supported (deepseek2, qwen2, llama)", md.what(), a.arch);
  j["model_type"] = a.arch;
  const int64_t nextn = a.i("nextn_predict_layers", 0);
  j["num_hidden_layers"] = a.i("block_count") - nextn;  // block_count counts the MTP layers too
  j["hidden_size"] = a.i("embedding_length");
  j["intermediate_size"] = a.i("feed_forward_length");
  j["num_attention_heads"] = a.i("attention.head_count");
  j["vocab_size"] = vocab_size(m, a);
  j["max_position_embeddings"] = a.i("context_length", 4096);
  j["rms_norm_eps"] = a.f("attention.layer_norm_rms_epsilon", 1e-6);
  j["rope_theta"] = a.f("rope.freq_base", 10000.0);
  j["tie_word_embeddings"] = m.find("output.weight") == nullptr;
  j["rope_scaling"] = rope_scaling(a, deepseek);
  if (md.has("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = md.get_i64("tokenizer.ggml.bos_token_id");
  if (md.has("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = md.get_i64("tokenizer.ggml.eos_token_id");
  if (deepseek) {
    deepseek_fields(m, a, j);
  } else {
    j["num_key_value_heads"] = a.i("attention.head_count_kv", a.i("attention.head_count"));
    if (a.has("attention.key_length")) j["head_dim"] = a.i("attention.key_length");
    if (a.arch == "llama") {
      j["attention_bias"] = m.find("blk.0.attn_q.bias") != nullptr;
      j["mlp_bias"] = m.find("blk.0.ffn_gate.bias") != nullptr;
    }
  }
  return j;
}

ModelConfig gguf_model_config(const GgufModel& m) {
  ModelConfig c = ModelConfig::from_json(gguf_config_json(m));
  if (const GgufTensor* t = m.find("rope_freqs.weight")) {
    if (t->type != 0 || t->ne.size() != 1) fail("{}: rope_freqs.weight must be a 1-D F32 tensor", m.files().front());
    c.rope_scaling.freq_divisors.resize(size_t(t->ne[0]));
    std::memcpy(c.rope_scaling.freq_divisors.data(), t->data, t->nbytes);
  }
  return c;
}

// ---- tokenizer ----

namespace {

json split(const char* regex) {
  return {{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
}

// The pre-tokenizer a `tokenizer.ggml.pre` name stands for: the Split regexes of that
// family's tokenizer.json, then byte-level mapping without its own regex.
json pre_tokenizer(const std::string& pre, const std::string& what) {
  json seq = json::array();
  if (pre == "deepseek-v3" || pre == "deepseek-r1-qwen") {
    seq.push_back(split("\\p{N}{1,3}"));
    seq.push_back(split("[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"));
    seq.push_back(split("[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
                        " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"));
  } else if (pre == "qwen2") {
    seq.push_back(split("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"));
  } else if (pre == "llama-bpe") {
    seq.push_back(split("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"));
  } else {
    fail("{}: tokenizer.ggml.pre '{}' is not supported (deepseek-v3, deepseek-r1-qwen, qwen2, llama-bpe)", what, pre);
  }
  seq.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  return {{"type", "Sequence"}, {"pretokenizers", seq}};
}

// GGUF token types: 3 control, 4 user-defined (added tokens; only control ones are special).
constexpr int64_t kControl = 3, kUserDefined = 4;

}  // namespace

std::string gguf_tokenizer_json(const GgufMetadata& md) {
  const std::string model = md.get_str("tokenizer.ggml.model");
  if (model != "gpt2") fail("{}: tokenizer.ggml.model '{}' is not supported (gpt2, byte-level BPE)", md.what(), model);
  const auto& tokens = md.get_array_str("tokenizer.ggml.tokens");
  std::vector<int64_t> types;
  if (md.has("tokenizer.ggml.token_type")) types = md.get_array_i64("tokenizer.ggml.token_type");
  if (!types.empty() && types.size() != tokens.size())
    fail("{}: {} token types for {} tokens", md.what(), types.size(), tokens.size());
  json vocab = json::object(), added = json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string text(tokens[id]);
    vocab[text] = id;
    const int64_t type = types.empty() ? 1 : types[id];
    if (type == kControl || type == kUserDefined)
      added.push_back({{"id", id}, {"content", text}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", false}, {"special", type == kControl}});
  }
  json merges = json::array();
  if (md.has("tokenizer.ggml.merges"))
    for (std::string_view mg : md.get_array_str("tokenizer.ggml.merges")) merges.push_back(std::string(mg));
  const std::string pre = md.get_str("tokenizer.ggml.pre", "default");
  json doc;
  doc["version"] = "1.0";
  doc["added_tokens"] = added;
  doc["normalizer"] = pre == "qwen2" ? json{{"type", "NFC"}} : json(nullptr);
  doc["pre_tokenizer"] = pre_tokenizer(pre, md.what());
  doc["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}};
  doc["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"fuse_unk", false},
                  {"byte_fallback", false}, {"vocab", vocab}, {"merges", merges}};
  return doc.dump();
}

json gguf_tokenizer_config(const GgufMetadata& md) {
  const auto& tokens = md.get_array_str("tokenizer.ggml.tokens");
  json cfg = json::object();
  auto token = [&](const char* key, const char* field) {
    if (!md.has(key)) return;
    const uint64_t id = md.get_u64(key);
    if (id >= tokens.size()) fail("{}: {} {} is not a token id (vocab {})", md.what(), key, id, tokens.size());
    cfg[field] = std::string(tokens[id]);
  };
  token("tokenizer.ggml.bos_token_id", "bos_token");
  token("tokenizer.ggml.eos_token_id", "eos_token");
  token("tokenizer.ggml.padding_token_id", "pad_token");
  cfg["add_bos_token"] = md.get_bool("tokenizer.ggml.add_bos_token", false);
  if (md.has("tokenizer.chat_template")) cfg["chat_template"] = md.get_str("tokenizer.chat_template");
  return cfg;
}

}  // namespace fathom
