#pragma once
// Writes a checkpoint whose linear weights are stored in a block format (Q8_0/Q4_0), so that
// loading it needs no requantization and maps the smaller file directly. The result is the
// same, bit for bit, as loading the source with LoadOpts::quant: every Linear weight is
// dequantized exactly (FP8 with its block scales) and requantized with cpu::quantize_row.
// Streams strip by strip: memory use stays small whatever the model size.
#include <cstdint>
#include <string>

namespace fathom {

struct QuantizeCheckpointOpts {
  std::string model_dir;                      // source: config.json + safetensors
  std::string out_dir;                        // created; must not already hold safetensors
  std::string quant;                          // "q8_0" | "q4_0"
  uint64_t shard_bytes = uint64_t(4) << 30;   // split into files of at most this size
  int threads = 0;                            // 0: all cores
  bool progress = false;                      // progress line on stderr (when a terminal)
};

struct QuantizeCheckpointResult {
  uint64_t bytes_in = 0;    // bytes of the tensors read from the source
  uint64_t bytes_out = 0;   // bytes of tensor data written
  int64_t tensors = 0;      // tensors written
  int64_t quantized = 0;    // of which requantized to the block format
  int64_t shards = 0;
};

QuantizeCheckpointResult quantize_checkpoint(const QuantizeCheckpointOpts& opts);

}  // namespace fathom
