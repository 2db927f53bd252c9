#pragma once
// The checked loader: reads a family's role table, checks every tensor's name, dtype and
// shape against it before any math (a checkpoint that disagrees with its config fails with a
// message naming the tensor), and has the backend prepare each weight. Weights are then
// found by role, layer and expert, never by name.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "backend/backend.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "model/roles.h"

namespace fathom {

class Weights {
 public:
  Weights(Backend& be, const std::string& dir, const ModelConfig& cfg, const RoleTable& table, const LoadOpts& opts);

  // The weight of a role (layer and expert where the role has them); an Error if absent.
  const Weight& get(Role r, int64_t layer = -1, int64_t expert = -1) const;
  // The same, or nullptr when the checkpoint has no such weight (optional rows).
  const Weight* find(Role r, int64_t layer = -1, int64_t expert = -1) const;
  // Whether MTP layer `layer` was in the checkpoint (all its tensors are then loaded).
  bool has_layer(int64_t layer) const;

  size_t bytes() const { return bytes_; }

 private:
  static uint64_t key(Role r, int64_t layer, int64_t expert) {
    return uint64_t(r) << 48 | uint64_t(layer + 1) << 24 | uint64_t(expert + 1);
  }
  TensorStore store_;
  std::unordered_map<uint64_t, std::unique_ptr<Weight>> w_;
  std::vector<int64_t> mtp_layers_;  // MTP layers present
  size_t bytes_ = 0;
};

}  // namespace fathom
