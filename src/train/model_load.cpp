// TrainModel's tensors: read from a checkpoint (widened to fp32) or initialized as HF does,
// one Param per tensor of the family's role table.
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/random.h"
#include "io/safetensors.h"
#include "io/stored_matrix.h"
#include "train/model.h"

namespace fathom::train {

namespace {

// MTP modules' copies of the embedding and output head are not held: the modules share the
// main ones (DeepSeek-V3 §2.2), and a save writes the copies from them.
bool is_shared_copy(Role r) { return r == Role::MtpEmbed || r == Role::MtpHead; }

bool is_bias_role(Role r) {
  switch (r) {
    case Role::AttnQBias: case Role::AttnKBias: case Role::AttnVBias: case Role::AttnOBias:
    case Role::FfnGateBias: case Role::FfnUpBias: case Role::FfnDownBias: case Role::MoeRouterBias:
      return true;
    default:
      return false;
  }
}

// Widens a stored tensor to fp32: 1-D tensors as f32/bf16/f16, 2-D ones through the
// inference loader's checked view (FP8 block scales, q8_0, q4_0 included).
void widen(const TensorStore& store, const ModelConfig& cfg, const TensorView& t, float* out) {
  const int64_t n = t.numel();
  if (t.shape.size() == 2) {
    const StoredMatrix m = stored_matrix(store, cfg, t);
    const cpu::WeightView v = cpu::view_of(m);
    for (int64_t r = 0; r < m.rows; ++r) cpu::dequantize_row(v, r, out + r * m.cols);
    return;
  }
  const auto* p = static_cast<const uint8_t*>(t.data);
  switch (t.dtype) {
    case DType::F32: std::memcpy(out, p, size_t(n) * 4); break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = bf16_to_f32(h); }
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) { uint16_t h; std::memcpy(&h, p + 2 * i, 2); out[i] = f16_to_f32(h); }
      break;
    default: fail("{}: dtype {} cannot be trained from", t.name, dtype_name(t.dtype));
  }
}

// A standard normal deviate, value i of stream `stream` (Box-Muller over two counters).
float normal_at(uint64_t stream, uint64_t i) {
  const uint64_t a = splitmix64(stream ^ (2 * i)), b = splitmix64(stream ^ (2 * i + 1));
  const double u1 = (double(a >> 11) + 1.0) * 0x1.0p-53, u2 = double(b >> 11) * 0x1.0p-53;
  return float(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2));
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace


void TrainModel::hold(int64_t mtp_present, const std::function<bool(const WeightSpec&, Param&)>& fill) {
  for (WeightSpec& s : weight_table(cfg_)) {
    if (s.mtp && s.layer - cfg_.num_hidden_layers >= mtp_present) continue;
    if (is_shared_copy(s.role)) continue;
    auto p = std::make_unique<Param>();
    p->name = s.name;
    p->shape = s.shape;
    p->w.assign(size_t(p->numel()), 0.0f);
    p->trainable = s.role != Role::MoeRouterBias;
    p->decay = p->trainable && s.shape.size() >= 2;
    if (!fill(s, *p)) continue;
    p->g.assign(p->w.size(), 0.0f);
    by_role_[{int(s.role), s.layer, s.expert}] = p.get();
    all_.push_back(p.get());
    owned_.push_back(std::move(p));
  }
  build();
}

std::unique_ptr<TrainModel> TrainModel::load(const std::string& dir) {
  const nlohmann::json j = read_config_json(dir + "/config.json");
  ModelConfig cfg = ModelConfig::from_json(j);
  std::unique_ptr<TrainModel> m(new TrainModel(cfg, j));
  const TensorStore store = TensorStore::open(dir);
  // MTP modules count when the checkpoint has them (a stripped V3 keeps the config field).
  int64_t present = 0;
  while (present < cfg.num_nextn_predict_layers &&
         store.find(fill_name("model.layers.{L}.eh_proj.weight", cfg.num_hidden_layers + present)))
    ++present;
  m->hold(present, [&](const WeightSpec& s, Param& p) {
    const TensorView* t = store.find(s.name);
    if (!t) {
      if (s.row_optional) return false;  // an optional row the checkpoint leaves out
      fail("{}: tensor {} is missing", dir, s.name);
    }
    if (t->shape != s.shape) fail("{}: {} has shape {}, the config says {}", dir, s.name, t->shape_str(), shape_str(s.shape));
    widen(store, cfg, *t, p.w.data());
    return true;
  });
  return m;
}

std::unique_ptr<TrainModel> TrainModel::init(const nlohmann::json& config, uint64_t seed) {
  ModelConfig cfg = ModelConfig::from_json(config);
  double std_dev = 0.02;
  if (config.contains("initializer_range") && config["initializer_range"].is_number())
    std_dev = config["initializer_range"].get<double>();
  std::unique_ptr<TrainModel> m(new TrainModel(cfg, config));
  m->hold(cfg.num_nextn_predict_layers, [&](const WeightSpec& s, Param& p) {
    if (s.row_optional) return false;  // e.g. a router bias outside noaux_tc
    if (s.kind == WeightKind::Vector) {
      std::fill(p.w.begin(), p.w.end(), is_bias_role(s.role) ? 0.0f : 1.0f);
      return true;
    }
    const uint64_t stream = splitmix64(seed) ^ name_hash(s.name);
    for (size_t i = 0; i < p.w.size(); ++i) p.w[i] = float(std_dev) * normal_at(stream, i);
    return true;
  });
  return m;
}

Param* TrainModel::at(Role r, int64_t layer, int64_t expert) const {
  auto it = by_role_.find({int(r), layer, expert});
  return it == by_role_.end() ? nullptr : it->second;
}

Param* TrainModel::find(const std::string& name) const {
  for (Param* p : all_)
    if (p->name == name) return p;
  return nullptr;
}

std::vector<Param*> TrainModel::trainable() const {
  std::vector<Param*> v;
  for (Param* p : all_)
    if (p->trainable) v.push_back(p);
  return v;
}

const Param* TrainModel::source_of(const WeightSpec& s) const {
  if (s.role == Role::MtpEmbed) return embed_;
  if (s.role == Role::MtpHead) return head_;
  return at(s.role, s.layer, s.expert);
}

void TrainModel::zero_grad() {
  for (Param* p : all_) std::fill(p->g.begin(), p->g.end(), 0.0f);
}

}  // namespace fathom::train
