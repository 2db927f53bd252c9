#pragma once
// safetensors through mmap: one file, or a sharded checkpoint with model.safetensors.index.json.
// Every header is validated before any tensor is touched: lengths, dtypes, shapes, offsets in
// range and non-overlapping. A file that lies gets a fathom::Error naming the file and tensor.
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"

namespace fathom {

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
  std::string shape_str() const;  // "[2, 3]"
};

// "[2, 3]": a shape as errors name it.
std::string shape_str(const std::vector<int64_t>& shape);

// A read-only memory map of one file.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Parses and validates a safetensors header against a buffer of `file_size` bytes.
// Exposed on its own so the fuzzer and the negative tests can drive it without files.
struct SafetensorsHeader {
  std::map<std::string, TensorView> tensors;  // data = offset from the start of the buffer
  std::map<std::string, std::string> metadata;
};
SafetensorsHeader parse_safetensors(const uint8_t* buf, size_t file_size, std::string_view what);

// All tensors of a checkpoint directory (or of one .safetensors file).
class TensorStore {
 public:
  static TensorStore open(const std::string& path);  // dir or file
  // A store over tensors held elsewhere (e.g. converted from a GGUF file); `keep` owns the
  // memory the views point into and lives as long as the store.
  static TensorStore from_views(std::vector<TensorView> views, std::shared_ptr<const void> keep);
  const TensorView* find(std::string_view name) const;
  const TensorView& get(std::string_view name) const;  // throws if missing
  const std::map<std::string, TensorView, std::less<>>& all() const { return tensors_; }
  size_t total_bytes() const;
  // Drops the pages of a tensor that was copied elsewhere (e.g. requantized), so resident
  // memory tracks the format in use. The mapping stays valid; pages reload if touched.
  // Edges::Keep drops only pages wholly inside the tensor, so neighbours in use stay
  // resident; Edges::Drop also drops the pages it shares with its neighbours, for a reader
  // that streams through the checkpoint (tensors smaller than a page then leave nothing).
  enum class Edges { Keep, Drop };
  void release(const TensorView& t, Edges edges = Edges::Keep) const;

 private:
  std::vector<std::unique_ptr<MappedFile>> files_;
  std::shared_ptr<const void> keep_;
  std::map<std::string, TensorView, std::less<>> tensors_;
};

// Streaming writer: the header is written first, then each tensor in order, so a large
// checkpoint never needs to be in memory at once.
class SafetensorsWriter {
 public:
  struct Entry {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  SafetensorsWriter(const std::string& path, std::vector<Entry> entries,
                    const std::map<std::string, std::string>& metadata = {});
  ~SafetensorsWriter();
  // Appends bytes of the current tensor; tensors must be written whole and in order.
  void write(const void* data, size_t n);
  void finish();  // checks every byte was written
  static size_t entry_bytes(const Entry& e);

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
  size_t expected_ = 0, written_ = 0;
};

// Convenience: writes F32 tensors in one go.
void write_safetensors_f32(const std::string& path,
                           const std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, const float*>>>& tensors);

}  // namespace fathom
