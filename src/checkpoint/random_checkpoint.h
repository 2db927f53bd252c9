#pragma once
// Writes a checkpoint with random weights in the exact HF layout (config.json + sharded
// safetensors + index), for benchmarks and tests. Streams to disk: memory use stays small
// whatever the model size.
#include <cstdint>
#include <string>

namespace fathom {

struct RandomCheckpointOpts {
  std::string config_path;  // a config.json
  std::string out_dir;
  std::string dtype = "bf16";            // bf16 | fp8 (e4m3 + 128×128 scale_inv, as DeepSeek-V3 ships)
  uint64_t seed = 0;
  uint64_t shard_bytes = uint64_t(4) << 30;  // split into files of at most this size
  int threads = 0;
  bool progress = false;
};

// Returns the bytes written.
uint64_t write_random_checkpoint(const RandomCheckpointOpts& opts);

}  // namespace fathom
