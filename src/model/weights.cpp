#include "model/weights.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/progress.h"
#include "io/gguf_config.h"
#include "io/stored_matrix.h"
#include "io/tensor_check.h"
#include "model/gguf_store.h"

namespace fathom {

static void to_f32(const TensorView& t, std::vector<float>& out) {
  out.resize(size_t(t.numel()));
  const uint8_t* p = static_cast<const uint8_t*>(t.data);
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t h;
    switch (t.dtype) {
      case DType::F32: std::memcpy(&out[i], p + 4 * i, 4); break;
      case DType::BF16: std::memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_f32(h); break;
      case DType::F16: std::memcpy(&h, p + 2 * i, 2); out[i] = f16_to_f32(h); break;
      default: fail("tensor '{}': dtype {} is not allowed here", t.name, dtype_name(t.dtype));
    }
  }
}

// The config's layer and expert counts against the checkpoint, before anything
// proportional to them is built: a tensor every layer (every expert) has must exist for
// the last one. Counting what is there is bounded by the tensors present.
static void check_counts(const TensorStore& store, const ModelConfig& cfg, const RoleTable& table,
                         const ExpertPlacement& experts) {
  auto row = [&](Scope scope) {
    return std::find_if(table.begin(), table.end(), [&](const RoleRow& r) {
      return r.when && r.scope == scope && !r.optional && (scope == Scope::Expert || r.layers == LayerSet::All);
    });
  };
  const int64_t L = cfg.num_hidden_layers;
  if (auto r = row(Scope::Layer); r != table.end() && !store.find(fill_name(r->hf, L - 1))) {
    int64_t have = 0;
    while (have < L && store.find(fill_name(r->hf, have))) ++have;
    fail("config.json: num_hidden_layers is {}, but the checkpoint has {} layer{} (missing tensor '{}')", L, have,
         have == 1 ? "" : "s", fill_name(r->hf, have));
  }
  const int64_t E = cfg.n_routed_experts;
  int64_t moe = 0;  // the first MoE layer
  while (moe < L && !cfg.is_moe_layer(moe)) ++moe;
  if (auto r = row(Scope::Expert); r != table.end() && moe < L && experts.holds(E - 1) &&
                                   !store.find(fill_name(r->hf, moe, E - 1))) {
    int64_t have = 0;
    while (have < E && store.find(fill_name(r->hf, moe, have))) ++have;
    fail("config.json: n_routed_experts is {}, but layer {} of the checkpoint has {} (missing tensor '{}')", E, moe,
         have, fill_name(r->hf, moe, have));
  }
}

Weights::Weights(Backend& be, const std::string& dir, const ModelConfig& cfg, const RoleTable& table,
                 const LoadOpts& opts)
    : store_(opts.store ? opts.store() : is_gguf_path(dir) ? gguf_tensor_store(dir, cfg, table) : TensorStore::open(dir)) {
  const auto quant = parse_block_quant(opts.quant);
  if (!opts.experts.held.empty() && int64_t(opts.experts.held.size()) != cfg.n_routed_experts)
    fail("expert placement names {} experts, but the model has {}", opts.experts.held.size(), cfg.n_routed_experts);
  check_counts(store_, cfg, table, opts.experts);
  // An MTP layer is loaded whole when the checkpoint has it (many checkpoints drop it).
  for (const RoleRow& r : table)
    if (r.when && r.role == Role::MtpEhProj)
      for (int64_t l = cfg.num_hidden_layers; l < cfg.num_hidden_layers + cfg.num_nextn_predict_layers; ++l)
        if (store_.find(fill_name(r.hf, l))) mtp_layers_.push_back(l);
  // The specs this process loads, checked for presence as they are formed: the first
  // missing tensor ends the walk, so its cost is bounded by the tensors present.
  std::vector<WeightSpec> specs;
  auto layer_fn = [&](int64_t l) { return l < cfg.num_hidden_layers || has_layer(l); };
  auto expert_fn = [&](int64_t e) { return opts.experts.holds(e); };
  const FunctionRef<bool(int64_t)> want_layer = layer_fn, want_expert = expert_fn;
  for_each_spec(table, cfg, {.fn = [&](WeightSpec&& s) {
                               if (!store_.find(s.name) && !(s.mtp ? s.row_optional : s.optional))
                                 fail("{}: missing tensor '{}' (expected shape {})", dir, s.name, shape_str(s.shape));
                               specs.push_back(std::move(s));
                             },
                             .layer = &want_layer,
                             .expert = &want_expert});
  auto prep = [&](const WeightSpec& s) {
    WeightPrep p;
    if (s.kind == WeightKind::Linear) p.requant = quant;
    p.repack = opts.repack;
    p.rows_only = s.kind == WeightKind::Matrix;
    return p;
  };
  // Weights that become the backend's own memory live in one arena.
  size_t arena = 0;
  for (const WeightSpec& s : specs)
    if (const TensorView* t = store_.find(s.name); t && t->shape == s.shape && s.kind != WeightKind::Vector) {
      StoredMatrix m;  // only the dtype and shape matter for the plan
      m.dtype = t->dtype;
      m.rows = s.shape[0];
      m.cols = s.shape[1];
      arena += be.arena_bytes(m, prep(s));
    }
  be.reserve_arena(arena);
  Progress progress(opts.progress, "loading tensors", specs.size());
  for (const WeightSpec& spec : specs) {
    progress.step();
    const TensorView* t = store_.find(spec.name);
    if (!t) continue;  // optional (the walk above refused missing required ones)
    if (t->shape != spec.shape)
      fail("tensor '{}': shape {} disagrees with config.json, which implies {}", spec.name, t->shape_str(),
           shape_str(spec.shape));
    const uint64_t k = key(spec.role, spec.layer, spec.expert);
    check_values(*t, {.full = opts.check_weights, .matrix = spec.kind != WeightKind::Vector});
    if (spec.kind == WeightKind::Vector) {
      std::vector<float> v;
      to_f32(*t, v);
      w_[k] = be.prepare_vector(v);
      bytes_ += t->nbytes;
      continue;
    }
    const StoredMatrix m = stored_matrix(store_, cfg, *t);
    if (m.scale) check_values(*m.scale, {.full = opts.check_weights});
    const WeightPrep p = prep(spec);
    const bool own = be.arena_bytes(m, p) > 0;  // the source is no longer read
    std::unique_ptr<Weight> w = be.prepare_matrix(m, p);
    if (own) store_.release(*t);
    bytes_ += w->bytes();
    if (w->dtype() == DType::F8_E4M3) bytes_ += m.scale->nbytes;  // still read with its weight
    w_[k] = std::move(w);
  }
}

const Weight* Weights::find(Role r, int64_t layer, int64_t expert) const {
  auto it = w_.find(key(r, layer, expert));
  return it == w_.end() ? nullptr : it->second.get();
}

const Weight& Weights::get(Role r, int64_t layer, int64_t expert) const {
  const Weight* w = find(r, layer, expert);
  if (!w) fail("weight {} (layer {}, expert {}) was not loaded", role_name(r), layer, expert);
  return *w;
}

bool Weights::has_layer(int64_t layer) const {
  return std::find(mtp_layers_.begin(), mtp_layers_.end(), layer) != mtp_layers_.end();
}

}  // namespace fathom
