// libFuzzer target: the GGUF header parser. Input bytes are used as-is as a GGUF file; every
// accepted tensor must lie inside the buffer, and every metadata value must read back through
// the typed accessors without touching memory outside it.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const fathom::GgufHeader h = fathom::parse_gguf(data, size, "fuzz");
    for (const fathom::GgufTensor& t : h.tensors) {
      const size_t off = reinterpret_cast<uintptr_t>(t.data);
      if (off > size || t.nbytes > size - off || off % h.alignment != 0) __builtin_trap();
      const fathom::GgufTypeLayout* l = fathom::gguf_type_layout(t.type);
      if (!l || t.row_length() % l->block_values != 0) __builtin_trap();
      // Small supported tensors are decoded, so the decoders see fuzzed bytes too.
      if (l->supported && t.numel() <= 4096) {
        std::vector<float> out(size_t(t.numel()));
        fathom::gguf_dequantize(t.type, data + off, out.data(), t.numel());
      }
    }
    const fathom::GgufMetadata& m = h.metadata;
    for (const auto& [key, v] : m.all()) {
      (void)fathom::gguf_value_str(v);
      try {
        if (v.type == fathom::GgufValueType::Array) {
          if (v.elem == fathom::GgufValueType::String) (void)m.get_array_str(key);
          else if (v.elem == fathom::GgufValueType::F32 || v.elem == fathom::GgufValueType::F64) (void)m.get_array_f32(key);
          else (void)m.get_array_i64(key);
        } else {
          (void)m.get_i64(key);
        }
      } catch (const fathom::Error&) {
      }
    }
  } catch (const fathom::Error&) {
  }
  return 0;
}
