#pragma once
// GGUF (v2, v3) through mmap: one file, or a split set NAME-0000K-of-0000N.gguf opened from
// any of its shards. Every header is validated before a tensor is touched: counts against the
// bytes left, string lengths, value and type ids, dims, alignment, offsets in range and
// non-overlapping. A file that lies gets a fathom::Error naming the file (and key or tensor).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fathom {

class MappedFile;

// GGUF metadata value types, as numbered in the file.
enum class GgufValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
};
std::string_view gguf_value_type_name(GgufValueType t);  // "uint32", "array", ...

// One metadata value. Strings and array elements point into the parsed buffer, so a value
// lives as long as the GgufHeader / GgufModel it came from.
struct GgufValue {
  GgufValueType type = GgufValueType::U8;
  // Scalars: integers in `i` (signed types) or `u` (unsigned, bool); floats in `f`.
  int64_t i = 0;
  uint64_t u = 0;
  double f = 0;
  std::string_view str;
  // Arrays: element type and count; numeric elements stay in the buffer (little-endian,
  // possibly unaligned), strings are listed.
  GgufValueType elem = GgufValueType::U8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;
  std::vector<std::string_view> strings;
};
// The value as a short string ("uint32 5", "string 'gpt2'", "array of 1024 string").
std::string gguf_value_str(const GgufValue& v);

// Metadata of one file. Typed accessors accept any stored type that holds the value exactly
// (an int32 key read as uint32, say, when it is non-negative), since writers differ in the
// integer width they pick; otherwise they throw naming the file, the key and both types.
class GgufMetadata {
 public:
  GgufMetadata() = default;
  explicit GgufMetadata(std::string what) : what_(std::move(what)) {}
  void add(std::string key, GgufValue v);  // throws on a duplicate key
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }
  const std::map<std::string, GgufValue, std::less<>>& all() const { return kv_; }

  uint32_t get_u32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  int32_t get_i32(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;  // float32, or a float64 (rounded)
  double get_f64(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::string get_str(std::string_view key) const;
  // With a fallback for an absent key (a present key of the wrong type still throws).
  uint32_t get_u32(std::string_view key, uint32_t fallback) const;
  uint64_t get_u64(std::string_view key, uint64_t fallback) const;
  int64_t get_i64(std::string_view key, int64_t fallback) const;
  float get_f32(std::string_view key, float fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;
  std::string get_str(std::string_view key, std::string fallback) const;

  const GgufValue& get_array(std::string_view key) const;  // any element type
  std::vector<int64_t> get_array_i64(std::string_view key) const;  // any integer elements
  std::vector<float> get_array_f32(std::string_view key) const;    // float32 or float64 elements
  const std::vector<std::string_view>& get_array_str(std::string_view key) const;

  const std::string& what() const { return what_; }

 private:
  const GgufValue& need(std::string_view key) const;
  std::string what_;
  std::map<std::string, GgufValue, std::less<>> kv_;
};

// GGML block layout of a tensor type id (nullptr: an id fathom does not know).
struct GgufTypeLayout {
  const char* name;
  int64_t block_values;
  int64_t block_bytes;
  bool supported;  // gguf_dequantize handles it
};
const GgufTypeLayout* gguf_type_layout(uint32_t type);
// Dequantizes `n` values (a multiple of the type's block) of type `type` to F32; throws for a
// type without a dequantizer.
void gguf_dequantize(uint32_t type, const void* src, float* dst, int64_t n);

struct GgufTensor {
  std::string name;
  uint32_t type = 0;        // GGML type id
  std::vector<int64_t> ne;  // GGML order: ne[0] is the row length (the contiguous dimension)
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int shard = 0;  // index into the split set (0 for a single file)

  int64_t numel() const;
  int64_t row_length() const { return ne.empty() ? 1 : ne[0]; }
  int64_t rows() const { return row_length() ? numel() / row_length() : 0; }
  const char* type_name() const;
  // The shape numpy / safetensors use: ne reversed ([ne[n-1], ..., ne[0]]).
  std::vector<int64_t> shape() const;
};

// A parsed GGUF file held in a buffer of `file_size` bytes. Exposed on its own so the fuzzer
// and the negative tests can drive it without files. Tensors are in file order, and their
// `data` is the offset from the start of the buffer.
struct GgufHeader {
  uint32_t version = 0;
  uint64_t alignment = 32;  // general.alignment
  uint64_t data_start = 0;  // first byte of the data section
  GgufMetadata metadata;
  std::vector<GgufTensor> tensors;
};
GgufHeader parse_gguf(const uint8_t* buf, size_t file_size, std::string_view what);

// A GGUF model: one file or every shard of a split set. Metadata is the first shard's (the
// others carry only split.* keys); tensors are every shard's, in order.
class GgufModel {
 public:
  static GgufModel open(const std::string& path);
  GgufModel(GgufModel&&) noexcept;
  GgufModel& operator=(GgufModel&&) noexcept;
  ~GgufModel();

  const GgufMetadata& metadata() const { return metadata_; }
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find(std::string_view name) const;
  const GgufTensor& get(std::string_view name) const;  // throws if missing
  const std::vector<std::string>& files() const { return paths_; }  // the shards, in order
  std::string architecture() const { return metadata_.get_str("general.architecture"); }

 private:
  GgufModel() = default;
  std::vector<std::unique_ptr<MappedFile>> maps_;
  std::vector<std::string> paths_;
  GgufMetadata metadata_;
  std::vector<GgufTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

// "NAME-00002-of-00005.gguf" -> {"NAME", 2, 5}; nullopt for a name without the pattern.
struct GgufSplitName {
  std::string prefix;  // path up to "-0000K-of-0000N.gguf"
  int no = 0, count = 0;
};
std::optional<GgufSplitName> parse_gguf_split_name(const std::string& path);
std::string gguf_split_path(const std::string& prefix, int no, int count);

}  // namespace fathom
