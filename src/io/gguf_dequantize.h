#pragma once
// Writes every tensor of a GGUF model dequantized to F32, as DIR/model.safetensors: each under
// its GGUF name, with the numpy shape (GGUF ne reversed). Streams a chunk of rows at a time, so
// memory stays small whatever the model size. `fathom dequantize` runs this; outside tools
// compare its output with other dequantizers, so the layout must stay as it is.
#include <cstdint>
#include <string>

namespace fathom {

struct GgufDequantizeOpts {
  std::string model;    // a .gguf file, or any shard of a split set
  std::string out_dir;  // created; must not already hold model.safetensors
};

struct GgufDequantizeResult {
  int64_t tensors = 0;
  uint64_t bytes_in = 0;   // tensor bytes read from the GGUF
  uint64_t bytes_out = 0;  // F32 bytes written
  std::string path;        // the safetensors file written
};

GgufDequantizeResult dequantize_gguf(const GgufDequantizeOpts& opts);

}  // namespace fathom
