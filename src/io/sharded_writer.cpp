#include "io/sharded_writer.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fathom {
namespace fs = std::filesystem;

ShardedWriter::ShardedWriter(std::string dir, std::vector<SafetensorsWriter::Entry> tensors, uint64_t shard_bytes,
                             std::map<std::string, std::string> metadata)
    : dir_(std::move(dir)), tensors_(std::move(tensors)), metadata_(std::move(metadata)) {
  uint64_t cur = 0;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const uint64_t b = SafetensorsWriter::entry_bytes(tensors_[i]);
    const bool is_scale = i > 0 && tensors_[i].name == tensors_[i - 1].name + "_scale_inv";
    if (i == 0 || (cur > 0 && cur + b > shard_bytes && !is_scale)) {
      first_.push_back(i);
      cur = 0;
    }
    cur += b;
    total_ += b;
  }
}

std::string ShardedWriter::file_name(size_t s) const {
  return first_.size() == 1 ? "model.safetensors"
                            : fmt::format("model-{:05d}-of-{:05d}.safetensors", s + 1, first_.size());
}

SafetensorsWriter& ShardedWriter::at(size_t i) {
  if (i >= tensors_.size()) fail("sharded writer: tensor {} of {}", i, tensors_.size());
  const size_t s = size_t(std::upper_bound(first_.begin(), first_.end(), i) - first_.begin()) - 1;
  if (s != open_) {
    if (w_) w_->finish();
    const size_t end = s + 1 < first_.size() ? first_[s + 1] : tensors_.size();
    std::vector<SafetensorsWriter::Entry> entries(tensors_.begin() + long(first_[s]), tensors_.begin() + long(end));
    w_ = std::make_unique<SafetensorsWriter>((fs::path(dir_) / file_name(s)).string(), std::move(entries), metadata_);
    open_ = s;
  }
  return *w_;
}

void ShardedWriter::finish() {
  if (w_) w_->finish();
  w_.reset();
  if (first_.size() <= 1) return;
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < first_.size(); ++s) {
    const size_t end = s + 1 < first_.size() ? first_[s + 1] : tensors_.size();
    for (size_t i = first_[s]; i < end; ++i) weight_map[tensors_[i].name] = file_name(s);
  }
  std::ofstream out(fs::path(dir_) / "model.safetensors.index.json");
  out << nlohmann::json{{"metadata", {{"total_size", total_}}}, {"weight_map", weight_map}}.dump(1) << "\n";
}

}  // namespace fathom
