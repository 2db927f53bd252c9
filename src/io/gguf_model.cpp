// GgufModel: the mapped shards of a GGUF model, and the GGML type table it sizes tensors with.
#include <cstring>
#include <filesystem>
#include <regex>

#include "core/dtype.h"
#include "core/error.h"
#include "io/gguf.h"
#include "io/safetensors.h"

namespace fathom {
namespace fs = std::filesystem;

// ---- GGML types ----

const GgufTypeLayout* gguf_type_layout(uint32_t type) {
  // Indexed by GGML type id; ids 4 and 5 were retired from the format. Bytes per block follow
  // each block's struct: e.g. Q8_0 is an f16 scale and 32 int8, Q4_K two f16, 12 bytes of
  // packed scales and 128 bytes of nibbles.
  static const GgufTypeLayout table[] = {
      {"F32", 1, 4, true},         {"F16", 1, 2, true},        {"Q4_0", 32, 18, false},
      {"Q4_1", 32, 20, false},     {nullptr, 0, 0, false},     {nullptr, 0, 0, false},
      {"Q5_0", 32, 22, false},     {"Q5_1", 32, 24, false},    {"Q8_0", 32, 34, true},
      {"Q8_1", 32, 36, false},     {"Q2_K", 256, 84, false},   {"Q3_K", 256, 110, false},
      {"Q4_K", 256, 144, false},   {"Q5_K", 256, 176, false},  {"Q6_K", 256, 210, false},
      {"Q8_K", 256, 292, false},   {"IQ2_XXS", 256, 66, false}, {"IQ2_XS", 256, 74, false},
      {"IQ3_XXS", 256, 98, false}, {"IQ1_S", 256, 50, false},  {"IQ4_NL", 32, 18, false},
      {"IQ3_S", 256, 110, false},  {"IQ2_S", 256, 82, false},  {"IQ4_XS", 256, 136, false},
      {"I8", 1, 1, false},         {"I16", 1, 2, false},       {"I32", 1, 4, false},
      {"I64", 1, 8, false},        {"F64", 1, 8, false},       {"IQ1_M", 256, 56, false},
      {"BF16", 1, 2, true},
  };
  if (type >= std::size(table) || !table[type].name) return nullptr;
  return &table[type];
}

// The one place tensor bytes become floats. The plain types and Q8_0 are decoded here; the
// other block types need the GGML dequantizers.
void gguf_dequantize(uint32_t type, const void* src, float* dst, int64_t n) {
  const auto* p = static_cast<const uint8_t*>(src);
  auto u16 = [&](int64_t byte) { return uint16_t(p[byte] | (p[byte + 1] << 8)); };
  switch (type) {
    case 0:  // F32
      std::memcpy(dst, src, size_t(n) * 4);
      return;
    case 1:  // F16
      for (int64_t k = 0; k < n; ++k) dst[k] = f16_to_f32(u16(2 * k));
      return;
    case 30:  // BF16
      for (int64_t k = 0; k < n; ++k) dst[k] = bf16_to_f32(u16(2 * k));
      return;
    case 8:  // Q8_0: block = f16 scale d, int8 q[32]; x = d * q
      for (int64_t b = 0; b < n / 32; ++b) {
        const float d = f16_to_f32(u16(34 * b));
        for (int k = 0; k < 32; ++k) dst[32 * b + k] = float(int8_t(p[34 * b + 2 + k])) * d;
      }
      return;
  }
  const GgufTypeLayout* l = gguf_type_layout(type);
  fail("dequantizing GGML type {} is not supported", l ? l->name : std::to_string(type));
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
