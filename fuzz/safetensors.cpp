// libFuzzer target: safetensors headers and config.json parsing. Input bytes are used
// as-is as a safetensors file, and as a config.json document.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/config.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto h = fathom::parse_safetensors(data, size, "fuzz");
    for (auto& [name, t] : h.tensors) {
      // Every accepted tensor must lie inside the buffer.
      const size_t off = reinterpret_cast<uintptr_t>(t.data);
      if (off > size || t.nbytes > size - off) __builtin_trap();
    }
  } catch (const fathom::Error&) {
  }
  try {
    auto j = nlohmann::json::parse(data, data + size);
    auto c = fathom::ModelConfig::from_json(j);
    (void)c.attn_scale();
  } catch (const fathom::Error&) {
  } catch (const nlohmann::json::exception&) {
  }
  return 0;
}
