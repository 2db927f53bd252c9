#pragma once
// Writes a checkpoint's tensors, in order, as HF lays them out: model.safetensors, or shards
// model-0000i-of-0000n.safetensors of at most `shard_bytes` plus model.safetensors.index.json.
// A `<name>_scale_inv` tensor stays in the shard of the `<name>` before it.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace fathom {

class ShardedWriter {
 public:
  ShardedWriter(std::string dir, std::vector<SafetensorsWriter::Entry> tensors, uint64_t shard_bytes,
                std::map<std::string, std::string> metadata);
  // The writer that takes tensor i's bytes; call with i = 0, 1, ... in order.
  SafetensorsWriter& at(size_t i);
  // Closes the last shard and writes the index when there are several.
  void finish();
  size_t shards() const { return first_.size(); }
  uint64_t bytes() const { return total_; }

 private:
  std::string file_name(size_t shard) const;
  std::string dir_;
  std::vector<SafetensorsWriter::Entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::vector<size_t> first_;  // [shards] index of each shard's first tensor
  size_t open_ = SIZE_MAX;     // shard being written
  std::unique_ptr<SafetensorsWriter> w_;
  uint64_t total_ = 0;
};

}  // namespace fathom
