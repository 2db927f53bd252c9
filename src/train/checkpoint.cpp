#include "train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/sharded_writer.h"

namespace fathom::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void write_json(const fs::path& path, const json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) fail("{}: cannot write", path.string());
}

// One tensor of the model directory and where its fp32 values come from.
struct Planned {
  const WeightSpec* spec;
  const float* data;
  DType dtype;
};

// The table's tensors that have data, in table order. A tensor of an MTP layer that has some
// of its tensors must have all those its row does not mark optional.
std::vector<Planned> plan_tensors(const SaveOpts& o, const std::vector<WeightSpec>& table) {
  std::map<std::string, const Param*, std::less<>> by_name;
  for (const Param* p : o.params)
    if (!by_name.emplace(p->name, p).second) fail("save_model: parameter {} is given twice", p->name);
  std::set<int64_t> mtp_present;
  std::vector<const float*> data(table.size(), nullptr);
  for (size_t i = 0; i < table.size(); ++i) {
    const WeightSpec& s = table[i];
    if (auto it = by_name.find(s.name); it != by_name.end()) {
      const Param& p = *it->second;
      if (p.shape != s.shape)
        fail("save_model: {} has shape {}, the config's table says {}", s.name, shape_str(p.shape), shape_str(s.shape));
      if (int64_t(p.w.size()) != p.numel())
        fail("save_model: {} holds {} values for shape {}", s.name, p.w.size(), shape_str(p.shape));
      data[i] = p.w.data();
      by_name.erase(it);
    } else if (o.lookup) {
      data[i] = o.lookup(s);
    }
    if (data[i] && s.mtp) mtp_present.insert(s.layer);
  }
  if (!by_name.empty())
    fail("save_model: parameter {} is not a tensor of this config's {} table", by_name.begin()->first,
         o.config.value("model_type", std::string("?")));
  std::vector<Planned> plan;
  for (size_t i = 0; i < table.size(); ++i) {
    const WeightSpec& s = table[i];
    if (!data[i]) {
      const bool required = s.mtp ? mtp_present.count(s.layer) && !s.row_optional : !s.optional;
      if (required) fail("save_model: no data for {} ({})", s.name, role_name(s.role));
      continue;
    }
    // The score-correction bias only ever moves by small steps: it stays F32 in bf16 checkpoints.
    const DType dt = s.role == Role::MoeRouterBias ? DType::F32 : o.dtype;
    plan.push_back({&s, data[i], dt});
  }
  return plan;
}

uint64_t write_tensors(const std::string& dir, const std::vector<Planned>& plan, uint64_t shard_bytes) {
  std::vector<SafetensorsWriter::Entry> entries;
  for (const Planned& p : plan) entries.push_back({p.spec->name, p.dtype, p.spec->shape});
  ShardedWriter out(dir, std::move(entries), shard_bytes, {{"format", "pt"}});
  std::vector<uint16_t> half;  // [chunk] bf16 staging
  constexpr int64_t chunk = int64_t(1) << 20;
  for (size_t i = 0; i < plan.size(); ++i) {
    SafetensorsWriter& w = out.at(i);
    const Planned& p = plan[i];
    int64_t n = 1;
    for (int64_t d : p.spec->shape) n *= d;
    if (p.dtype == DType::F32) {
      w.write(p.data, size_t(n) * 4);
      continue;
    }
    for (int64_t k0 = 0; k0 < n; k0 += chunk) {
      const int64_t k1 = std::min(n, k0 + chunk);
      half.resize(size_t(k1 - k0));
      for (int64_t k = k0; k < k1; ++k) half[size_t(k - k0)] = f32_to_bf16(p.data[k]);
      w.write(half.data(), half.size() * 2);
    }
  }
  out.finish();
  return out.bytes();
}

void copy_tokenizer(const std::string& from, const fs::path& to) {
  int copied = 0;
  for (const char* name : kTokenizerFiles) {
    const fs::path src = fs::path(from) / name;
    if (!fs::is_regular_file(src)) continue;
    fs::copy_file(src, to / name, fs::copy_options::overwrite_existing);
    ++copied;
  }
  if (copied == 0) fail("save_model: {} has no tokenizer files (tokenizer.json, tokenizer_config.json)", from);
}

json generation_config(const json& config) {
  json g = {{"_from_model_config", true}};
  for (const char* key : {"bos_token_id", "eos_token_id", "pad_token_id"})
    if (config.contains(key) && !config[key].is_null()) g[key] = config[key];
  return g;
}

}  // namespace

void write_dir_atomically(const std::string& dir, const std::function<void(const std::string& tmp)>& write) {
  fs::path p(dir);
  if (!p.has_filename()) p = p.parent_path();  // "out/" names "out"
  if (p.empty()) fail("cannot write a directory with an empty name");
  fs::path tmp = p, old = p;
  tmp += ".tmp";
  old += ".old";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write(tmp.string());
  // A directory cannot be renamed over a non-empty one: the good copy steps aside first.
  if (fs::exists(p)) {
    fs::remove_all(old);
    fs::rename(p, old);
  }
  fs::rename(tmp, p);
  fs::remove_all(old);
}

uint64_t save_model(const SaveOpts& o) {
  if (o.dtype != DType::BF16 && o.dtype != DType::F32)
    fail("save_model: dtype must be bf16 or f32, not {}", dtype_name(o.dtype));
  if (o.shard_bytes == 0) fail("save_model: shard size must be > 0");
  json cj = o.config;
  cj["torch_dtype"] = o.dtype == DType::BF16 ? "bfloat16" : "float32";
  const ModelConfig cfg = ModelConfig::from_json(cj);
  const std::vector<WeightSpec> table = weight_table(cfg);
  const std::vector<Planned> plan = plan_tensors(o, table);
  uint64_t bytes = 0;
  write_dir_atomically(o.dir, [&](const std::string& tmp) {
    write_json(fs::path(tmp) / "config.json", cj);
    write_json(fs::path(tmp) / "generation_config.json", generation_config(cj));
    bytes = write_tensors(tmp, plan, o.shard_bytes);
    if (!o.tokenizer_dir.empty()) copy_tokenizer(o.tokenizer_dir, tmp);
  });
  return bytes;
}

// --- training state ---

namespace {

constexpr const char* kParamsFile = "params.safetensors";
constexpr const char* kOptimFile = "optimizer.safetensors";
constexpr const char* kStateFile = "train_state.json";
constexpr int kStateVersion = 1;

using F32Tensors = std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, const float*>>>;

// Tensor `name` of `store`, which must be F32 of `shape`.
const TensorView& f32_tensor(const TensorStore& store, const std::string& file, const std::string& name,
                             const std::vector<int64_t>& shape) {
  const TensorView* t = store.find(name);
  if (!t) fail("{}: has no tensor {}", file, name);
  if (t->dtype != DType::F32) fail("{}: {} is {}, not F32", file, name, dtype_name(t->dtype));
  if (t->shape != shape)
    fail("{}: {} has shape {}, the model's is {}", file, name, t->shape_str(), shape_str(shape));
  return *t;
}

void copy_f32(const TensorView& t, std::vector<float>& out) {
  out.resize(size_t(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), t.data, out.size() * 4);
}

// Every tensor in the file is one the model expects.
void check_no_extra(const TensorStore& store, const std::string& file, const std::set<std::string>& expected) {
  for (const auto& [name, t] : store.all())
    if (!expected.count(name)) fail("{}: tensor {} is not one of the model's (a different model or trainable set?)", file, name);
}

}  // namespace

void save_train_state(const std::string& dir, const AdamW& opt, const TrainState& s) {
  const std::vector<Param*>& ps = opt.params();
  F32Tensors params, moments;
  std::set<std::string> seen;
  for (size_t i = 0; i < ps.size(); ++i) {
    const Param& p = *ps[i];
    if (!seen.insert(p.name).second) fail("save_train_state: parameter {} appears twice", p.name);
    if (int64_t(p.w.size()) != p.numel())
      fail("save_train_state: {} holds {} values for shape {}", p.name, p.w.size(), shape_str(p.shape));
    params.push_back({p.name, {p.shape, p.w.data()}});
    if (!p.trainable) continue;
    moments.push_back({"exp_avg/" + p.name, {p.shape, opt.m(i).data()}});
    moments.push_back({"exp_avg_sq/" + p.name, {p.shape, opt.v(i).data()}});
  }
  const AdamWConfig& c = opt.config();
  const json state = {{"version", kStateVersion},
                      {"step", opt.steps()},
                      {"data_pos", s.data_pos},
                      {"rng_seed", s.rng_seed},
                      {"rng_state", s.rng_state},
                      {"extra", s.extra},
                      // For the record: resuming may change them.
                      {"adamw", {{"lr", c.lr}, {"beta1", c.beta1}, {"beta2", c.beta2}, {"eps", c.eps},
                                 {"weight_decay", c.weight_decay}}}};
  write_dir_atomically(dir, [&](const std::string& tmp) {
    write_safetensors_f32((fs::path(tmp) / kParamsFile).string(), params);
    write_safetensors_f32((fs::path(tmp) / kOptimFile).string(), moments);
    write_json(fs::path(tmp) / kStateFile, state);
  });
}

TrainState load_train_state(const std::string& dir, AdamW& opt) {
  const std::string state_path = (fs::path(dir) / kStateFile).string();
  const json j = read_config_json(state_path);
  auto field = [&](const char* key) -> const json& {
    if (!j.is_object() || !j.contains(key)) fail("{}: missing '{}'", state_path, key);
    return j[key];
  };
  if (field("version") != kStateVersion)
    fail("{}: version {} (this fathom reads {})", state_path, field("version").dump(), kStateVersion);
  TrainState s;
  int64_t step = 0;
  try {
    step = field("step").get<int64_t>();
    s.data_pos = field("data_pos").get<uint64_t>();
    s.rng_seed = field("rng_seed").get<uint64_t>();
    s.rng_state = field("rng_state").get<uint64_t>();
  } catch (const json::exception& e) {
    fail("{}: {}", state_path, e.what());
  }
  s.extra = j.value("extra", json::object());

  const std::string pfile = (fs::path(dir) / kParamsFile).string();
  const std::string ofile = (fs::path(dir) / kOptimFile).string();
  const TensorStore params = TensorStore::open(pfile);
  const TensorStore moments = TensorStore::open(ofile);
  const std::vector<Param*>& ps = opt.params();
  std::set<std::string> pnames, mnames;
  for (const Param* p : ps) {
    pnames.insert(p->name);
    if (p->trainable) mnames.insert({"exp_avg/" + p->name, "exp_avg_sq/" + p->name});
  }
  check_no_extra(params, pfile, pnames);
  check_no_extra(moments, ofile, mnames);
  // Everything is checked before anything is overwritten, so a mismatch leaves the model as it was.
  struct Source {
    const TensorView *w, *m = nullptr, *v = nullptr;
  };
  std::vector<Source> src;
  for (const Param* p : ps) {
    Source x{&f32_tensor(params, pfile, p->name, p->shape)};
    if (p->trainable) {
      x.m = &f32_tensor(moments, ofile, "exp_avg/" + p->name, p->shape);
      x.v = &f32_tensor(moments, ofile, "exp_avg_sq/" + p->name, p->shape);
    }
    src.push_back(x);
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    copy_f32(*src[i].w, ps[i]->w);
    if (!src[i].m) continue;
    copy_f32(*src[i].m, opt.m(i));
    copy_f32(*src[i].v, opt.v(i));
  }
  opt.set_steps(step);
  return s;
}

}  // namespace fathom::train
