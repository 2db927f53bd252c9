#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/files.h"
#include "core/error.h"
#include "io/config.h"

namespace fathom {
namespace fs = std::filesystem;
using nlohmann::json;

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string TensorView::shape_str() const { return fathom::shape_str(shape); }

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // Checked before open, since opening a FIFO blocks until a writer appears, and again on
  // the descriptor (O_NONBLOCK: never wait) in case the path changed in between.
  require_regular_file(path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail("cannot open {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail("cannot stat {}: {}", path, std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: is {}, not a regular file", path, file_kind(st.st_mode));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    // Populate now: the first decode steps would otherwise fault in experts page by page.
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail("cannot mmap {}: {}", path, std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

SafetensorsHeader parse_safetensors(const uint8_t* buf, size_t file_size, std::string_view what) {
  if (file_size < 8) fail("{}: truncated safetensors file ({} bytes, need at least 8)", what, file_size);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | buf[i];
  if (hlen > file_size - 8)
    fail("{}: safetensors header length {} runs past the end of the file ({} bytes)", what, hlen, file_size);
  if (hlen > (size_t(100) << 20)) fail("{}: safetensors header of {} bytes is too large", what, hlen);
  const size_t data_start = 8 + size_t(hlen);
  const size_t data_size = file_size - data_start;

  json h;
  try {
    h = json::parse(buf + 8, buf + data_start);
  } catch (const json::exception& e) {
    fail("{}: malformed safetensors header JSON: {}", what, e.what());
  }
  if (!h.is_object()) fail("{}: safetensors header is not a JSON object", what);

  SafetensorsHeader out;
  struct Span { size_t b, e; const std::string* name; };
  std::vector<Span> spans;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("{}: __metadata__ is not an object", what);
      for (auto m = v.begin(); m != v.end(); ++m)
        if (m.value().is_string()) out.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      fail("{}: tensor '{}' needs dtype, shape and data_offsets", what, name);
    if (!v["dtype"].is_string()) fail("{}: tensor '{}': dtype is not a string", what, name);
    auto dt = dtype_from_safetensors(v["dtype"].get<std::string>());
    if (!dt) fail("{}: tensor '{}': unsupported dtype '{}'", what, name, v["dtype"].get<std::string>());
    TensorView t;
    t.name = name;
    t.dtype = *dt;
    if (!v["shape"].is_array()) fail("{}: tensor '{}': shape is not an array", what, name);
    // numel is bounded by the file size, so products cannot overflow once checked stepwise.
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        fail("{}: tensor '{}': shape entries must be non-negative integers", what, name);
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > std::numeric_limits<uint64_t>::max() / dim)
        fail("{}: tensor '{}': shape overflows", what, name);
      numel *= dim;
      t.shape.push_back(int64_t(dim));
    }
    const json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail("{}: tensor '{}': data_offsets must be two non-negative integers", what, name);
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size)
      fail("{}: tensor '{}': data_offsets [{}, {}] out of range (data section is {} bytes)", what, name, b, e,
           data_size);
    const int bv = dtype_block_values(*dt);
    if (t.shape.empty() ? bv != 1 : t.shape.back() % bv != 0)
      fail("{}: tensor '{}': last dimension must be a multiple of {} for {}", what, name, bv, dtype_name(*dt));
    if (numel > data_size) fail("{}: tensor '{}': {} elements cannot fit in the file", what, name, numel);
    const uint64_t need = dtype_bytes(*dt, int64_t(numel));
    if (e - b != need)
      fail("{}: tensor '{}': {} {} needs {} bytes but data_offsets span {}", what, name, dtype_name(*dt),
           t.shape_str(), need, e - b);
    t.data = reinterpret_cast<const void*>(uintptr_t(data_start + b));
    t.nbytes = size_t(need);
    out.tensors.emplace(name, std::move(t));
  }
  for (auto& [name, t] : out.tensors) {
    size_t b = reinterpret_cast<uintptr_t>(t.data) - data_start;
    if (t.nbytes) spans.push_back({b, b + t.nbytes, &name});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.b < b.b; });
  for (size_t i = 1; i < spans.size(); ++i)
    if (spans[i].b < spans[i - 1].e)
      fail("{}: tensors '{}' and '{}' overlap in the data section", what, *spans[i - 1].name, *spans[i].name);
  return out;
}

static void add_file(const std::string& path, std::vector<std::unique_ptr<MappedFile>>& files,
                     std::map<std::string, TensorView, std::less<>>& tensors) {
  auto f = std::make_unique<MappedFile>(path);
  SafetensorsHeader h = parse_safetensors(f->data(), f->size(), path);
  for (auto& [name, t] : h.tensors) {
    TensorView v = t;
    v.data = f->data() + reinterpret_cast<uintptr_t>(t.data);
    if (!tensors.emplace(name, std::move(v)).second) fail("{}: tensor '{}' appears in more than one file", path, name);
  }
  files.push_back(std::move(f));
}

TensorStore TensorStore::open(const std::string& path) {
  TensorStore s;
  if (!fs::exists(path)) fail("{}: no such file or directory", path);
  if (!fs::is_directory(path)) {
    add_file(path, s.files_, s.tensors_);
    return s;
  }
  const fs::path dir(path);
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index)) {
    const json j = read_config_json(index.string());
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      fail("{}: missing weight_map object", index.string());
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) fail("{}: weight_map['{}'] is not a file name", index.string(), it.key());
      std::string file = it.value().get<std::string>();
      if (file.find('/') != std::string::npos || file.find("..") != std::string::npos)
        fail("{}: weight_map['{}'] names a file outside the directory", index.string(), it.key());
      by_file[file].push_back(it.key());
    }
    for (auto& [file, names] : by_file) {
      add_file((dir / file).string(), s.files_, s.tensors_);
      for (auto& n : names)
        if (!s.tensors_.count(n)) fail("{}: index says '{}' is in {}, but it is not", index.string(), n, file);
    }
    return s;
  }
  std::vector<std::string> shards;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".safetensors") shards.push_back(e.path().string());
  if (shards.empty()) fail("{}: no model.safetensors or model.safetensors.index.json", path);
  std::sort(shards.begin(), shards.end());
  for (auto& f : shards) add_file(f, s.files_, s.tensors_);
  return s;
}

const TensorView* TensorStore::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorView& TensorStore::get(std::string_view name) const {
  const TensorView* t = find(name);
  if (!t) fail("missing tensor '{}'", name);
  return *t;
}

TensorStore TensorStore::from_views(std::vector<TensorView> views, std::shared_ptr<const void> keep) {
  TensorStore st;
  st.keep_ = std::move(keep);
  for (TensorView& v : views)
    if (auto [it, fresh] = st.tensors_.try_emplace(v.name, std::move(v)); !fresh)
      fail("tensor '{}' is listed twice", it->first);
  return st;
}

void TensorStore::release(const TensorView& t, Edges edges) const {
  // A store built from views (a GGUF file) may hold tensors in heap buffers, where dropping
  // pages would zero them: only mapped checkpoints give pages back.
  if (keep_) return;
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t in = edges == Edges::Keep ? page - 1 : 0, out = edges == Edges::Keep ? 0 : page - 1;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(t.data) + in) & ~(page - 1);
  const uintptr_t e = (reinterpret_cast<uintptr_t>(t.data) + t.nbytes + out) & ~(page - 1);
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);  // advisory: failure is harmless
}

size_t TensorStore::total_bytes() const {
  size_t n = 0;
  for (auto& [k, t] : tensors_) n += t.nbytes;
  return n;
}

size_t SafetensorsWriter::entry_bytes(const Entry& e) {
  int64_t n = 1;
  for (auto d : e.shape) n *= d;
  return dtype_bytes(e.dtype, n);
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t off = 0;
  for (auto& e : entries) {
    size_t n = entry_bytes(e);
    h[e.name] = {{"dtype", std::string(dtype_name(e.dtype))}, {"shape", e.shape}, {"data_offsets", {off, off + n}}};
    off += n;
  }
  expected_ = off;
  std::string hs = h.dump();
  while ((8 + hs.size()) % 8) hs.push_back(' ');  // aligned data section
  f_ = std::fopen(path.c_str(), "wb");
  if (!f_) fail("cannot create {}: {}", path, std::strerror(errno));
  uint8_t len[8];
  uint64_t hl = hs.size();
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(hl >> (8 * i));
  std::fwrite(len, 1, 8, f_);
  std::fwrite(hs.data(), 1, hs.size(), f_);
}

SafetensorsWriter::~SafetensorsWriter() {
  if (f_) std::fclose(f_);
}

void SafetensorsWriter::write(const void* data, size_t n) {
  if (written_ + n > expected_) fail("{}: more tensor data than the header declares", path_);
  if (n && std::fwrite(data, 1, n, f_) != n) fail("{}: write failed: {}", path_, std::strerror(errno));
  written_ += n;
}

void SafetensorsWriter::finish() {
  if (written_ != expected_) fail("{}: wrote {} of {} bytes", path_, written_, expected_);
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    fail("{}: close failed: {}", path_, std::strerror(errno));
  }
  f_ = nullptr;
}

void write_safetensors_f32(const std::string& path,
                           const std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, const float*>>>& ts) {
  std::vector<SafetensorsWriter::Entry> es;
  for (auto& [n, t] : ts) es.push_back({n, DType::F32, t.first});
  SafetensorsWriter w(path, es);
  for (size_t i = 0; i < ts.size(); ++i) w.write(ts[i].second.second, SafetensorsWriter::entry_bytes(es[i]));
  w.finish();
}

}  // namespace fathom
