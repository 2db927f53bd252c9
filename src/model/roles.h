#pragma once
// One declarative role table per family: each row names a weight's role, its shape from the
// config, and its name in each source format. Loading (weights.cpp), building (the family
// files, which ask for roles, never names), writing random checkpoints and quantizing
// checkpoints all read the same rows, so no tensor name is written twice.
#include <cstdint>
#include <string>
#include <vector>

#include "core/function_ref.h"
#include "io/config.h"

namespace fathom {

enum class WeightKind : uint8_t {
  Linear,  // [out, in]; any matmul format; F8_E4M3 needs `<name>_scale_inv`
  Vector,  // [n]; norms and biases, kept as f32
  Matrix,  // [rows, cols] kept as stored (embeddings, the MoE router): never requantized
};

enum class Role : uint8_t {
  Embed, FinalNorm, LmHead,
  AttnNorm, FfnNorm,
  AttnQ, AttnK, AttnV, AttnO, AttnQBias, AttnKBias, AttnVBias, AttnOBias,
  AttnQA, AttnQANorm, AttnQB, AttnKvA, AttnKvANorm, AttnKvB, AttnUkT, AttnUv,
  FfnGate, FfnUp, FfnDown, FfnGateBias, FfnUpBias, FfnDownBias,
  MoeRouter, MoeRouterBias, ExpertGate, ExpertUp, ExpertDown, SharedGate, SharedUp, SharedDown,
  MtpEnorm, MtpHnorm, MtpEhProj, MtpEmbed, MtpHeadNorm, MtpHead,
  Count
};
// "attn.q_a", "ffn.expert.gate", …: how errors and dumps name a role.
const char* role_name(Role r);

enum class Scope : uint8_t {
  Model,   // once
  Layer,   // once per decoder layer ({L}), the MTP layers included
  Expert,  // once per routed expert ({L}, {E})
  Mtp,     // once per MTP layer only ({L} = num_hidden_layers + i)
};
enum class LayerSet : uint8_t { All, Dense, Moe };  // which decoder layers a Layer/Expert row is in

struct RoleRow {
  bool when = true;  // the config has this weight at all
  Role role;
  Scope scope = Scope::Layer;
  LayerSet layers = LayerSet::All;
  WeightKind kind = WeightKind::Linear;
  std::vector<int64_t> shape;  // from the config
  std::string hf;              // safetensors name; {L} layer, {E} expert
  std::string gguf;            // GGUF name (llama.cpp's; routed experts are one stacked tensor)
  bool optional = false;       // a checkpoint may leave it out
  bool gguf_only = false;      // only GGUF files hold it (not an HF tensor; weight_table skips it)
};
using RoleTable = std::vector<RoleRow>;

enum class NameFormat { Hf, Gguf };

// One tensor of a checkpoint: a row for one layer and expert.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  WeightKind kind = WeightKind::Linear;
  bool optional = false;  // may be missing (the row's own flag, or any tensor of an MTP layer)
  Role role = Role::Embed;
  int64_t layer = -1, expert = -1;
  bool mtp = false;           // belongs to an MTP layer: loaded when that layer is present
  bool row_optional = false;  // the row's own flag
  bool gguf_only = false;     // the row's own flag
};

// A row's name pattern with {L} and {E} filled in.
std::string fill_name(const std::string& pattern, int64_t layer, int64_t expert = -1);

// Every tensor the table names for this config, in table order per layer: the model rows,
// then layers 0..L-1, then the MTP layers L..L+num_nextn_predict_layers-1. Each HF name is
// the row's pattern with {L} and {E} filled in.
std::vector<WeightSpec> expand(const RoleTable& t, const ModelConfig& c, NameFormat f = NameFormat::Hf);

// expand() without the list: each spec goes to `fn` in the same order, and layers or experts
// that `layer` / `expert` turn down are skipped before any name is formed. The loader uses
// it to stop at the first missing tensor, so a config claiming 10^9 layers costs nothing.
struct SpecVisit {
  NameFormat format = NameFormat::Hf;
  FunctionRef<void(WeightSpec&&)> fn;
  const FunctionRef<bool(int64_t)>* layer = nullptr;   // null: every layer
  const FunctionRef<bool(int64_t)>* expert = nullptr;  // null: every routed expert
};
void for_each_spec(const RoleTable& t, const ModelConfig& c, const SpecVisit& v);

// Each family's table (one file each).
RoleTable deepseek_roles(const ModelConfig& c);
RoleTable qwen2_roles(const ModelConfig& c);
RoleTable llama_roles(const ModelConfig& c);
RoleTable role_table(const ModelConfig& c);  // the config's family

// The HF tensors of the config's family (expand(role_table(c), c) without GGUF-only rows).
std::vector<WeightSpec> weight_table(const ModelConfig& c);

}  // namespace fathom
