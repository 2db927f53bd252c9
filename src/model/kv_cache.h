#pragma once
// The KV cache: a pool of fixed-size slots sized once at start, one slot per live sequence.
// Each layer stores `width` floats per token: for MLA the compressed latent + the roped key
// (absorbed layout, what DeepSeek caches); for GQA the keys then the values.
#include <cstdint>
#include <vector>

#include "core/error.h"

namespace fathom {

class KvCache {
 public:
  KvCache(int64_t n_layers, int64_t width, int64_t n_slots, int64_t max_ctx)
      : n_layers_(n_layers), width_(width), n_slots_(n_slots), max_ctx_(max_ctx),
        data_(size_t(n_layers * n_slots * max_ctx * width)) {}  // [L, slots, ctx, width]

  int64_t n_slots() const { return n_slots_; }
  int64_t max_ctx() const { return max_ctx_; }
  int64_t width() const { return width_; }
  size_t bytes() const { return data_.size() * sizeof(float); }

  float* at(int64_t layer, int64_t slot, int64_t pos) {
    return data_.data() + ((layer * n_slots_ + slot) * max_ctx_ + pos) * width_;
  }
  void check(int64_t slot, int64_t pos_end) const {
    if (slot < 0 || slot >= n_slots_) fail("kv cache: slot {} out of range ({} slots)", slot, n_slots_);
    if (pos_end > max_ctx_) fail("kv cache: {} tokens exceed the context of {}", pos_end, max_ctx_);
  }

 private:
  int64_t n_layers_, width_, n_slots_, max_ctx_;
  std::vector<float> data_;
};

}  // namespace fathom
