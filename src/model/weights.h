#pragma once
// Declarative weight tables and the checked loader. Each family lists every tensor it needs
// with the shape its config implies; loading checks name, dtype and shape before any math,
// so a checkpoint that disagrees with its config fails with a message naming the tensor.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/packed.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace fathom {

enum class WeightKind {
  Linear,  // [out, in]; any matmul format; F8_E4M3 needs `<name>_scale_inv`
  Vector,  // [n]; norms and biases, kept as f32
  Matrix,  // [rows, cols] kept as stored (embeddings, the MoE router): never requantized
};

struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  WeightKind kind = WeightKind::Linear;
  bool optional = false;
};

// The loaded weights of one checkpoint, by name.
class Weights {
 public:
  // Validates every spec against the store and builds views; requantizes Linear weights
  // when opts.quant names a block format.
  Weights(const std::string& dir, const ModelConfig& cfg, const std::vector<WeightSpec>& table,
          const LoadOpts& opts);

  bool has(const std::string& name) const { return linear_.count(name) || vec_.count(name); }
  const cpu::WeightView& linear(const std::string& name) const;
  const std::vector<float>& vec(const std::string& name) const;
  // Dequantized f32 copy [rows, cols] of a Linear weight (for the absorbed MLA path).
  std::vector<float> dequantized(const std::string& name) const;

  size_t bytes() const { return bytes_; }
  const TensorStore& store() const { return store_; }

 private:
  TensorStore store_;
  std::map<std::string, cpu::WeightView> linear_;
  std::map<std::string, std::vector<float>> vec_;
  cpu::AlignedBytes arena_;  // requantized or packed weights, huge pages
  size_t bytes_ = 0;
};

}  // namespace fathom
