#include "io/gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include <fmt/ranges.h>

#include "core/error.h"

namespace fathom {

namespace {

// Size of one element of a fixed-size value type; 0 for string and array.
size_t value_size(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;
  }
}

bool is_signed_int(GgufValueType t) {
  return t == GgufValueType::I8 || t == GgufValueType::I16 || t == GgufValueType::I32 || t == GgufValueType::I64;
}
bool is_unsigned_int(GgufValueType t) {
  return t == GgufValueType::U8 || t == GgufValueType::U16 || t == GgufValueType::U32 || t == GgufValueType::U64;
}
bool is_float(GgufValueType t) { return t == GgufValueType::F32 || t == GgufValueType::F64; }

uint64_t load_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t k = n; k-- > 0;) v = (v << 8) | p[k];
  return v;
}

// Decodes one fixed-size element at p into v's scalar fields.
void decode_scalar(GgufValueType t, const uint8_t* p, GgufValue& v) {
  const size_t n = value_size(t);
  const uint64_t bits = load_le(p, n);
  v.type = t;
  if (is_unsigned_int(t) || t == GgufValueType::Bool) {
    v.u = bits;
  } else if (is_signed_int(t)) {
    const unsigned shift = unsigned(64 - 8 * n);  // sign-extend from n bytes
    v.i = int64_t(bits << shift) >> shift;
  } else if (t == GgufValueType::F32) {
    float f;
    const uint32_t b32 = uint32_t(bits);
    std::memcpy(&f, &b32, 4);
    v.f = f;
  } else {
    std::memcpy(&v.f, &bits, 8);
  }
}

// A bounds-checked cursor over the header bytes.
class Reader {
 public:
  Reader(const uint8_t* buf, size_t size, std::string_view what) : buf_(buf), size_(size), what_(what) {}
  size_t pos() const { return pos_; }
  size_t left() const { return size_ - pos_; }
  const uint8_t* here() const { return buf_ + pos_; }

  void need(uint64_t n, std::string_view ctx) const {
    if (n > left()) fail("{}: truncated GGUF file: {} needs {} bytes at offset {}, only {} left", what_, ctx, n, pos_, left());
  }
  uint64_t uint(size_t n, std::string_view ctx) {
    need(n, ctx);
    const uint64_t v = load_le(here(), n);
    pos_ += n;
    return v;
  }
  std::string_view str(std::string_view ctx) {
    const uint64_t len = uint(8, ctx);
    if (len > left())
      fail("{}: {}: string length {} runs past the end of the file ({} bytes left)", what_, ctx, len, left());
    std::string_view s(reinterpret_cast<const char*>(here()), size_t(len));
    pos_ += size_t(len);
    return s;
  }
  void skip(size_t n) { pos_ += n; }

 private:
  const uint8_t* buf_;
  size_t size_;
  size_t pos_ = 0;
  std::string_view what_;
};

GgufValueType read_value_type(Reader& r, std::string_view what, const std::string& ctx) {
  const uint64_t t = r.uint(4, ctx);
  if (t > uint32_t(GgufValueType::F64)) fail("{}: {}: unknown GGUF value type {}", what, ctx, t);
  return GgufValueType(t);
}

GgufValue read_value(Reader& r, GgufValueType t, std::string_view what, const std::string& ctx) {
  GgufValue v;
  v.type = t;
  if (t == GgufValueType::String) {
    v.str = r.str(ctx);
    return v;
  }
  if (t != GgufValueType::Array) {
    r.need(value_size(t), ctx);
    decode_scalar(t, r.here(), v);
    r.skip(value_size(t));
    if (t == GgufValueType::Bool && v.u > 1) fail("{}: {}: bool value {} is neither 0 nor 1", what, ctx, v.u);
    return v;
  }
  v.elem = read_value_type(r, what, ctx + " (array element type)");
  if (v.elem == GgufValueType::Array) fail("{}: {}: nested arrays are not supported", what, ctx);
  v.count = r.uint(8, ctx + " (array length)");
  // Every element takes at least its fixed size (8 bytes of length for a string), so a count
  // beyond the bytes left is a lie; checked before anything is reserved.
  const size_t min_elem = v.elem == GgufValueType::String ? 8 : value_size(v.elem);
  if (v.count > r.left() / min_elem)
    fail("{}: {}: array of {} {} cannot fit in the {} bytes left", what, ctx, v.count, gguf_value_type_name(v.elem),
         r.left());
  if (v.elem == GgufValueType::String) {
    v.strings.reserve(size_t(v.count));
    for (uint64_t k = 0; k < v.count; ++k) v.strings.push_back(r.str(ctx));
  } else {
    v.raw = r.here();
    r.skip(size_t(v.count) * min_elem);
    if (v.elem == GgufValueType::Bool)
      for (uint64_t k = 0; k < v.count; ++k)
        if (v.raw[k] > 1) fail("{}: {}: bool element {} is neither 0 nor 1", what, ctx, k);
  }
  return v;
}

// Element k of a numeric array, decoded.
GgufValue element(const GgufValue& a, uint64_t k) {
  GgufValue e;
  decode_scalar(a.elem, a.raw + k * value_size(a.elem), e);
  return e;
}

}  // namespace

std::string_view gguf_value_type_name(GgufValueType t) {
  switch (t) {
    case GgufValueType::U8: return "uint8";
    case GgufValueType::I8: return "int8";
    case GgufValueType::U16: return "uint16";
    case GgufValueType::I16: return "int16";
    case GgufValueType::U32: return "uint32";
    case GgufValueType::I32: return "int32";
    case GgufValueType::F32: return "float32";
    case GgufValueType::Bool: return "bool";
    case GgufValueType::String: return "string";
    case GgufValueType::Array: return "array";
    case GgufValueType::U64: return "uint64";
    case GgufValueType::I64: return "int64";
    case GgufValueType::F64: return "float64";
  }
  return "unknown";
}

std::string gguf_value_str(const GgufValue& v) {
  const std::string type(gguf_value_type_name(v.type));
  if (is_unsigned_int(v.type)) return fmt::format("{} {}", type, v.u);
  if (is_signed_int(v.type)) return fmt::format("{} {}", type, v.i);
  if (is_float(v.type)) return fmt::format("{} {}", type, v.f);
  if (v.type == GgufValueType::Bool) return v.u ? "bool true" : "bool false";
  if (v.type == GgufValueType::String) {
    const bool cut = v.str.size() > 40;
    return fmt::format("string '{}{}'", v.str.substr(0, 40), cut ? "..." : "");
  }
  return fmt::format("array of {} {}", v.count, gguf_value_type_name(v.elem));
}

// ---- metadata accessors ----

void GgufMetadata::add(std::string key, GgufValue v) {
  if (kv_.count(key)) fail("{}: metadata key '{}' appears twice", what_, key);
  kv_.emplace(std::move(key), std::move(v));
}

const GgufValue* GgufMetadata::find(std::string_view key) const {
  auto it = kv_.find(key);
  return it == kv_.end() ? nullptr : &it->second;
}

const GgufValue& GgufMetadata::need(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) fail("{}: metadata key '{}' is missing", what_, key);
  return *v;
}

namespace {

// An integer value within [lo, hi], from any integer type that holds it exactly.
template <typename T>
T get_integer(const GgufValue& v, const std::string& what, std::string_view key, std::string_view want) {
  bool ok = false;
  T out = 0;
  if (is_unsigned_int(v.type)) {
    ok = v.u <= uint64_t(std::numeric_limits<T>::max());
    out = T(v.u);
  } else if (is_signed_int(v.type)) {
    ok = v.i >= 0 ? uint64_t(v.i) <= uint64_t(std::numeric_limits<T>::max())
                  : std::numeric_limits<T>::is_signed && v.i >= int64_t(std::numeric_limits<T>::min());
    out = T(v.i);
  }
  if (!ok) fail("{}: metadata key '{}' is {}, expected {}", what, key, gguf_value_str(v), want);
  return out;
}

}  // namespace

uint32_t GgufMetadata::get_u32(std::string_view key) const { return get_integer<uint32_t>(need(key), what_, key, "a uint32"); }
uint64_t GgufMetadata::get_u64(std::string_view key) const { return get_integer<uint64_t>(need(key), what_, key, "a uint64"); }
int32_t GgufMetadata::get_i32(std::string_view key) const { return get_integer<int32_t>(need(key), what_, key, "an int32"); }
int64_t GgufMetadata::get_i64(std::string_view key) const { return get_integer<int64_t>(need(key), what_, key, "an int64"); }

double GgufMetadata::get_f64(std::string_view key) const {
  const GgufValue& v = need(key);
  if (!is_float(v.type)) fail("{}: metadata key '{}' is {}, expected a float", what_, key, gguf_value_str(v));
  return v.f;
}
float GgufMetadata::get_f32(std::string_view key) const { return float(get_f64(key)); }

bool GgufMetadata::get_bool(std::string_view key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufValueType::Bool) fail("{}: metadata key '{}' is {}, expected a bool", what_, key, gguf_value_str(v));
  return v.u != 0;
}

std::string GgufMetadata::get_str(std::string_view key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufValueType::String) fail("{}: metadata key '{}' is {}, expected a string", what_, key, gguf_value_str(v));
  return std::string(v.str);
}

uint32_t GgufMetadata::get_u32(std::string_view key, uint32_t fallback) const { return has(key) ? get_u32(key) : fallback; }
uint64_t GgufMetadata::get_u64(std::string_view key, uint64_t fallback) const { return has(key) ? get_u64(key) : fallback; }
int64_t GgufMetadata::get_i64(std::string_view key, int64_t fallback) const { return has(key) ? get_i64(key) : fallback; }
float GgufMetadata::get_f32(std::string_view key, float fallback) const { return has(key) ? get_f32(key) : fallback; }
bool GgufMetadata::get_bool(std::string_view key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
std::string GgufMetadata::get_str(std::string_view key, std::string fallback) const {
  return has(key) ? get_str(key) : fallback;
}

const GgufValue& GgufMetadata::get_array(std::string_view key) const {
  const GgufValue& v = need(key);
  if (v.type != GgufValueType::Array) fail("{}: metadata key '{}' is {}, expected an array", what_, key, gguf_value_str(v));
  return v;
}

std::vector<int64_t> GgufMetadata::get_array_i64(std::string_view key) const {
  const GgufValue& a = get_array(key);
  if (!is_signed_int(a.elem) && !is_unsigned_int(a.elem))
    fail("{}: metadata key '{}' is {}, expected an array of integers", what_, key, gguf_value_str(a));
  std::vector<int64_t> out(size_t(a.count));
  for (uint64_t k = 0; k < a.count; ++k) {
    const GgufValue e = element(a, k);
    if (is_unsigned_int(a.elem) && e.u > uint64_t(std::numeric_limits<int64_t>::max()))
      fail("{}: metadata key '{}': element {} ({}) does not fit an int64", what_, key, k, e.u);
    out[size_t(k)] = is_signed_int(a.elem) ? e.i : int64_t(e.u);
  }
  return out;
}

std::vector<float> GgufMetadata::get_array_f32(std::string_view key) const {
  const GgufValue& a = get_array(key);
  if (!is_float(a.elem)) fail("{}: metadata key '{}' is {}, expected an array of floats", what_, key, gguf_value_str(a));
  std::vector<float> out(size_t(a.count));
  for (uint64_t k = 0; k < a.count; ++k) out[size_t(k)] = float(element(a, k).f);
  return out;
}

const std::vector<std::string_view>& GgufMetadata::get_array_str(std::string_view key) const {
  const GgufValue& a = get_array(key);
  if (a.elem != GgufValueType::String)
    fail("{}: metadata key '{}' is {}, expected an array of strings", what_, key, gguf_value_str(a));
  return a.strings;
}

// ---- tensors ----

int64_t GgufTensor::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

const char* GgufTensor::type_name() const {
  const GgufTypeLayout* l = gguf_type_layout(type);
  return l ? l->name : "unknown";
}

std::vector<int64_t> GgufTensor::shape() const { return {ne.rbegin(), ne.rend()}; }

// ---- the parser ----

GgufHeader parse_gguf(const uint8_t* buf, size_t file_size, std::string_view what) {
  Reader r(buf, file_size, what);
  GgufHeader h;
  h.metadata = GgufMetadata(std::string(what));
  r.need(4, "the magic");
  if (std::memcmp(buf, "GGUF", 4) != 0) fail("{}: not a GGUF file (no 'GGUF' magic)", what);
  r.skip(4);
  const uint64_t version = r.uint(4, "the version");
  if (version == 0x02000000u || version == 0x03000000u)
    fail("{}: big-endian GGUF files are not supported", what);
  if (version != 2 && version != 3) fail("{}: GGUF version {} is not supported (only 2 and 3)", what, version);
  h.version = uint32_t(version);
  const uint64_t n_tensors = r.uint(8, "the tensor count");
  const uint64_t n_kv = r.uint(8, "the metadata count");
  // Smallest encodings: a key/value is a key length, a type and one byte; a tensor info is a
  // name length, a dim count, a type and an offset. Larger counts cannot fit in the file.
  if (n_kv > r.left() / 13) fail("{}: metadata count {} cannot fit in a file of {} bytes", what, n_kv, file_size);
  if (n_tensors > r.left() / 24) fail("{}: tensor count {} cannot fit in a file of {} bytes", what, n_tensors, file_size);

  for (uint64_t k = 0; k < n_kv; ++k) {
    const std::string key(r.str(fmt::format("metadata key {}", k)));
    const std::string ctx = fmt::format("metadata key '{}'", key);
    const GgufValueType t = read_value_type(r, what, ctx);
    h.metadata.add(key, read_value(r, t, what, ctx));
  }
  if (h.metadata.has("general.alignment")) {
    const GgufValue& a = *h.metadata.find("general.alignment");
    const uint64_t al = is_unsigned_int(a.type) ? a.u : is_signed_int(a.type) && a.i > 0 ? uint64_t(a.i) : 0;
    if (al == 0 || (al & (al - 1)) != 0 || al > (uint64_t(1) << 30))
      fail("{}: general.alignment is {}, expected a power of two", what, gguf_value_str(a));
    h.alignment = al;
  }

  h.tensors.reserve(size_t(n_tensors));
  std::map<std::string_view, size_t> seen;
  std::vector<uint64_t> offsets;
  offsets.reserve(size_t(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensor t;
    t.name = std::string(r.str(fmt::format("tensor {} name", k)));
    const std::string ctx = fmt::format("tensor '{}'", t.name);
    const uint64_t n_dims = r.uint(4, ctx + " dim count");
    if (n_dims > 4) fail("{}: {}: {} dims (at most 4)", what, ctx, n_dims);
    // numel stays below 2^63 once each product is checked, and below the file's capacity later.
    uint64_t numel = 1;
    for (uint64_t d = 0; d < n_dims; ++d) {
      const uint64_t n = r.uint(8, ctx + " dims");
      if (n > uint64_t(std::numeric_limits<int64_t>::max()) ||
          (n != 0 && numel > uint64_t(std::numeric_limits<int64_t>::max()) / n))
        fail("{}: {}: the product of its dims overflows", what, ctx);
      numel *= n;
      t.ne.push_back(int64_t(n));
    }
    t.type = uint32_t(r.uint(4, ctx + " type"));
    const GgufTypeLayout* layout = gguf_type_layout(t.type);
    if (!layout) fail("{}: {}: unknown GGML type id {}", what, ctx, t.type);
    if (t.row_length() % layout->block_values != 0)
      fail("{}: {}: row length {} is not a multiple of {}'s block of {} values", what, ctx, t.row_length(),
           layout->name, layout->block_values);
    const uint64_t blocks = numel / uint64_t(layout->block_values);
    if (blocks > file_size / uint64_t(layout->block_bytes))
      fail("{}: {}: {} {} of shape {} needs more bytes than the file holds", what, ctx, numel, layout->name,
           fmt::join(t.ne, "x"));
    t.nbytes = size_t(blocks * uint64_t(layout->block_bytes));
    const uint64_t offset = r.uint(8, ctx + " offset");
    if (offset % h.alignment != 0)
      fail("{}: {}: data offset {} is not aligned to {} bytes", what, ctx, offset, h.alignment);
    offsets.push_back(offset);
    h.tensors.push_back(std::move(t));
  }
  for (size_t k = 0; k < h.tensors.size(); ++k)
    if (!seen.emplace(h.tensors[k].name, k).second)
      fail("{}: tensor '{}' appears twice", what, h.tensors[k].name);

  const uint64_t pad = (h.alignment - r.pos() % h.alignment) % h.alignment;
  h.data_start = r.pos() + pad;
  // A file with no tensors may end right after its metadata, without the padding.
  if (!h.tensors.empty() && h.data_start > file_size)
    fail("{}: truncated GGUF file: the data section would start at {}, past the end ({} bytes)", what, h.data_start,
         file_size);
  const uint64_t data_size = h.data_start <= file_size ? file_size - h.data_start : 0;
  struct Span { uint64_t b, e; size_t k; };
  std::vector<Span> spans;
  for (size_t k = 0; k < h.tensors.size(); ++k) {
    GgufTensor& t = h.tensors[k];
    const uint64_t b = offsets[k];
    if (b > data_size || t.nbytes > data_size - b)
      fail("{}: tensor '{}': bytes [{}, {}) of the data section are out of range (it holds {} bytes)", what, t.name, b,
           b + t.nbytes, data_size);
    t.data = reinterpret_cast<const uint8_t*>(uintptr_t(h.data_start + b));
    if (t.nbytes) spans.push_back({b, b + t.nbytes, k});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.b < b.b; });
  for (size_t k = 1; k < spans.size(); ++k)
    if (spans[k].b < spans[k - 1].e)
      fail("{}: tensors '{}' and '{}' overlap in the data section", what, h.tensors[spans[k - 1].k].name,
           h.tensors[spans[k].k].name);
  return h;
}

}  // namespace fathom
