// GgufModel: the mapped shards of a GGUF model, and the GGML type table it sizes tensors with.
#include <cstring>
#include <filesystem>
#include <regex>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "io/ggml_quants.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace fathom {
namespace fs = std::filesystem;

// ---- GGML types: the one table and dequantizer (io/ggml_quants) ----

const GgufTypeLayout* gguf_type_layout(uint32_t type) {
  // Built once from ggml::type_info, in GGUF's own struct (ids 4 and 5 stay null).
  static const std::vector<GgufTypeLayout> table = [] {
    std::vector<GgufTypeLayout> t;
    for (uint32_t id = 0; id < 64; ++id) {
      const ggml::TypeInfo* i = ggml::type_info(id);
      t.push_back(i ? GgufTypeLayout{i->name, i->block_values, i->block_bytes, i->supported}
                    : GgufTypeLayout{nullptr, 0, 0, false});
    }
    return t;
  }();
  if (type >= table.size() || !table[type].name) return nullptr;
  return &table[type];
}

void gguf_dequantize(uint32_t type, const void* src, float* dst, int64_t n) {
  if (!gguf_type_layout(type)) fail("GGML type {} is unknown", type);
  ggml::dequantize_row(ggml::Type(type), src, dst, n);
}

// ---- split names ----

std::optional<GgufSplitName> parse_gguf_split_name(const std::string& path) {
  static const std::regex re(R"(^(.*)-([0-9]{5})-of-([0-9]{5})\.gguf$)");
  std::smatch m;
  if (!std::regex_match(path, m, re)) return std::nullopt;
  GgufSplitName s{m[1].str(), std::stoi(m[2].str()), std::stoi(m[3].str())};
  if (s.no < 1 || s.count < 1 || s.no > s.count) return std::nullopt;
  return s;
}

std::string gguf_split_path(const std::string& prefix, int no, int count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, no, count);
}

// ---- GgufModel ----

GgufModel::GgufModel(GgufModel&&) noexcept = default;
GgufModel& GgufModel::operator=(GgufModel&&) noexcept = default;
GgufModel::~GgufModel() = default;

const GgufTensor* GgufModel::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensor& GgufModel::get(std::string_view name) const {
  const GgufTensor* t = find(name);
  if (!t) fail("{}: no tensor '{}'", paths_.empty() ? "gguf" : paths_[0], name);
  return *t;
}

GgufModel GgufModel::open(const std::string& path) {
  if (!fs::exists(path)) fail("{}: no such file", path);
  struct Shard {
    std::unique_ptr<MappedFile> map;
    GgufHeader header;
  };
  auto load = [](const std::string& p) {
    Shard s;
    s.map = std::make_unique<MappedFile>(p);
    s.header = parse_gguf(s.map->data(), s.map->size(), p);
    return s;
  };
  Shard first = load(path);
  const GgufMetadata& meta0 = first.header.metadata;
  const int count = int(meta0.get_u32("split.count", 1));
  std::vector<Shard> shards;
  std::vector<std::string> paths;
  if (count <= 1) {
    shards.push_back(std::move(first));
    paths.push_back(path);
  } else {
    const auto name = parse_gguf_split_name(path);
    if (!name || name->count != count)
      fail("{}: is one of {} split files, but its name does not follow NAME-0000K-of-{:05d}.gguf, so the others "
           "cannot be found", path, count, count);
    for (int no = 1; no <= count; ++no) {
      const std::string p = gguf_split_path(name->prefix, no, count);
      if (no == name->no) {
        shards.push_back(std::move(first));
      } else {
        if (!fs::exists(p)) fail("{}: shard {} of {} is missing: {}", path, no, count, p);
        shards.push_back(load(p));
      }
      paths.push_back(p);
    }
  }

  GgufModel m;
  // The model's metadata is the first shard's; later shards repeat only the split keys.
  m.metadata_ = shards[0].header.metadata;
  uint64_t total = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const GgufHeader& h = shards[s].header;
    if (count > 1) {
      const uint32_t c = h.metadata.get_u32("split.count");
      const uint32_t no = h.metadata.get_u32("split.no");
      if (c != uint32_t(count) || no != s)
        fail("{}: split.no {} / split.count {}, expected {} / {} from its name", paths[s], no, c, s, count);
    }
    for (const GgufTensor& t : h.tensors) {
      GgufTensor v = t;
      v.data = shards[s].map->data() + reinterpret_cast<uintptr_t>(t.data);
      v.shard = int(s);
      if (!m.by_name_.emplace(v.name, m.tensors_.size()).second)
        fail("{}: tensor '{}' is also in {}", paths[s], v.name, paths[size_t(m.get(v.name).shard)]);
      m.tensors_.push_back(std::move(v));
    }
    total += h.tensors.size();
  }
  if (count > 1) {
    const uint64_t want = m.metadata_.get_u64("split.tensors.count");
    if (want != total) fail("{}: split.tensors.count is {}, but the {} shards hold {} tensors", path, want, count, total);
  }
  for (auto& s : shards) m.maps_.push_back(std::move(s.map));
  m.paths_ = std::move(paths);
  return m;
}

}  // namespace fathom
