#pragma once
// Builds GGUF bytes for tests, written straight from the format description (little-endian
// header, key/values, tensor infos, padding, data), so tests can corrupt any field.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace fathom::test {

class GgufBytes {
 public:
  std::string b;

  GgufBytes& raw(const std::string& s) { b += s; return *this; }
  GgufBytes& u8(uint8_t v) { b.push_back(char(v)); return *this; }
  GgufBytes& u16(uint16_t v) { return le(v, 2); }
  GgufBytes& u32(uint32_t v) { return le(v, 4); }
  GgufBytes& u64(uint64_t v) { return le(v, 8); }
  GgufBytes& f32(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u32(u); }
  GgufBytes& f64(double f) { uint64_t u; std::memcpy(&u, &f, 8); return u64(u); }
  GgufBytes& str(const std::string& s) { u64(s.size()); b += s; return *this; }
  GgufBytes& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    raw("GGUF");
    u32(version);
    u64(n_tensors);
    return u64(n_kv);
  }
  // A key and its value type; the caller appends the value.
  GgufBytes& key(const std::string& k, uint32_t type) { str(k); return u32(type); }
  GgufBytes& tensor(const std::string& name, const std::vector<uint64_t>& ne, uint32_t type, uint64_t offset) {
    str(name);
    u32(uint32_t(ne.size()));
    for (uint64_t n : ne) u64(n);
    u32(type);
    return u64(offset);
  }
  GgufBytes& pad(size_t align = 32) {
    while (b.size() % align) b.push_back('\0');
    return *this;
  }
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(b.data()); }
  size_t size() const { return b.size(); }

 private:
  GgufBytes& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b.push_back(char((v >> (8 * i)) & 0xff));
    return *this;
  }
};

// Value type ids and GGML type ids used by the tests (numbers from the format description).
enum : uint32_t { kU8 = 0, kI8, kU16, kI16, kU32, kI32, kF32, kBool, kString, kArray, kU64, kI64, kF64 };
enum : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1, kGgmlQ8_0 = 8, kGgmlQ6_K = 14, kGgmlBF16 = 30 };

}  // namespace fathom::test
