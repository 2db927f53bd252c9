#include "model/roles.h"

#include "core/error.h"

namespace fathom {

const char* role_name(Role r) {
  static constexpr const char* kNames[] = {
      "embed", "final_norm", "lm_head",
      "attn_norm", "ffn_norm",
      "attn.q", "attn.k", "attn.v", "attn.o", "attn.q.bias", "attn.k.bias", "attn.v.bias", "attn.o.bias",
      "attn.q_a", "attn.q_a_norm", "attn.q_b", "attn.kv_a", "attn.kv_a_norm", "attn.kv_b", "attn.uk_t", "attn.uv",
      "ffn.gate", "ffn.up", "ffn.down", "ffn.gate.bias", "ffn.up.bias", "ffn.down.bias",
      "ffn.router", "ffn.router_bias", "ffn.expert.gate", "ffn.expert.up", "ffn.expert.down",
      "ffn.shared.gate", "ffn.shared.up", "ffn.shared.down",
      "mtp.enorm", "mtp.hnorm", "mtp.eh_proj", "mtp.embed", "mtp.head_norm", "mtp.head"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == size_t(Role::Count));
  return size_t(r) < size_t(Role::Count) ? kNames[size_t(r)] : "?";
}

std::string fill_name(const std::string& pattern, int64_t layer, int64_t expert) {
  std::string s;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern.compare(i, 3, "{L}") == 0) {
      s += std::to_string(layer);
      i += 2;
    } else if (pattern.compare(i, 3, "{E}") == 0) {
      s += std::to_string(expert);
      i += 2;
    } else {
      s += pattern[i];
    }
  }
  return s;
}

void for_each_spec(const RoleTable& t, const ModelConfig& c, const SpecVisit& v) {
  const int64_t L = c.num_hidden_layers, n_mtp = c.num_nextn_predict_layers;
  auto emit = [&](const RoleRow& r, int64_t layer, int64_t expert) {
    WeightSpec s;
    s.name = fill_name(v.format == NameFormat::Hf ? r.hf : r.gguf, layer, expert);
    s.shape = r.shape;
    s.kind = r.kind;
    s.role = r.role;
    s.layer = layer;
    s.expert = expert;
    s.mtp = layer >= L;
    s.row_optional = r.optional;
    s.gguf_only = r.gguf_only;
    s.optional = r.optional || s.mtp;
    v.fn(std::move(s));
  };
  // Model rows keep their place around the layers: those listed first come first.
  size_t first_layer_row = t.size();
  for (size_t i = 0; i < t.size(); ++i)
    if (t[i].scope != Scope::Model) {
      first_layer_row = i;
      break;
    }
  for (size_t i = 0; i < first_layer_row; ++i)
    if (t[i].when) emit(t[i], -1, -1);
  auto layer_rows = [&](int64_t l) {
    if (v.layer && !(*v.layer)(l)) return;
    const bool mtp = l >= L, moe = c.is_moe_layer(l);
    auto in_layer = [&](const RoleRow& r) {
      if (!r.when || r.scope == Scope::Model || (r.scope == Scope::Mtp && !mtp)) return false;
      return r.layers == LayerSet::All || (r.layers == LayerSet::Moe) == moe;
    };
    bool experts_done = false;
    for (const RoleRow& r : t) {
      if (!in_layer(r)) continue;
      if (r.scope != Scope::Expert) {
        emit(r, l, -1);
        continue;
      }
      // Routed experts expert by expert, as checkpoints list them.
      if (experts_done) continue;
      experts_done = true;
      for (int64_t e = 0; e < c.n_routed_experts; ++e) {
        if (v.expert && !(*v.expert)(e)) continue;
        for (const RoleRow& x : t)
          if (x.scope == Scope::Expert && in_layer(x)) emit(x, l, e);
      }
    }
  };
  for (int64_t l = 0; l < L; ++l) layer_rows(l);
  for (size_t i = first_layer_row; i < t.size(); ++i)
    if (t[i].when && t[i].scope == Scope::Model) emit(t[i], -1, -1);
  for (int64_t l = L; l < L + n_mtp; ++l) layer_rows(l);
}

std::vector<WeightSpec> expand(const RoleTable& t, const ModelConfig& c, NameFormat f) {
  std::vector<WeightSpec> out;
  for_each_spec(t, c, {.format = f, .fn = [&](WeightSpec&& s) { out.push_back(std::move(s)); }});
  return out;
}

RoleTable role_table(const ModelConfig& c) {
  switch (c.arch) {
    case Arch::DeepseekV3:
    case Arch::DeepseekV2: return deepseek_roles(c);
    case Arch::Qwen2: return qwen2_roles(c);
    case Arch::Llama: return llama_roles(c);
  }
  fail("unsupported architecture");
}

std::vector<WeightSpec> weight_table(const ModelConfig& c) {
  std::vector<WeightSpec> t = expand(role_table(c), c);
  std::erase_if(t, [](const WeightSpec& s) { return s.gguf_only; });
  return t;
}

}  // namespace fathom
