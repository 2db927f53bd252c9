#pragma once
// The KV cache: a pool of fixed-size slots sized once at start, one slot per live sequence,
// in backend memory. Each layer stores `width` floats per token: for MLA the compressed latent
// + the roped key (absorbed layout, what DeepSeek caches); for GQA the keys then the values.
#include <cstdint>

#include "backend/backend.h"
#include "core/error.h"

namespace fathom {

class KvCache {
 public:
  KvCache(Backend& be, int64_t n_layers, int64_t width, int64_t n_slots, int64_t max_ctx)
      : be_(&be), n_layers_(n_layers), width_(width), n_slots_(n_slots), max_ctx_(max_ctx),
        n_(size_t(n_layers * n_slots * max_ctx * width)), data_(be.alloc_floats(n_)) {  // [L, slots, ctx, width]
    be.fill(data_, 0.f, n_);
  }
  ~KvCache() {
    if (data_) be_->free_floats(data_);
  }
  KvCache(const KvCache&) = delete;
  KvCache& operator=(const KvCache&) = delete;
  KvCache(KvCache&& o) noexcept
      : be_(o.be_), n_layers_(o.n_layers_), width_(o.width_), n_slots_(o.n_slots_), max_ctx_(o.max_ctx_), n_(o.n_),
        data_(o.data_) {
    o.data_ = nullptr;
  }

  int64_t n_layers() const { return n_layers_; }
  int64_t n_slots() const { return n_slots_; }
  int64_t max_ctx() const { return max_ctx_; }
  int64_t width() const { return width_; }
  size_t bytes() const { return n_ * sizeof(float); }

  // Backend memory of (layer, slot, pos): `width` floats, then the next position's.
  float* at(int64_t layer, int64_t slot, int64_t pos) const {
    return data_ + ((layer * n_slots_ + slot) * max_ctx_ + pos) * width_;
  }
  void check(int64_t slot, int64_t pos_end) const {
    if (slot < 0 || slot >= n_slots_) fail("kv cache: slot {} out of range ({} slots)", slot, n_slots_);
    if (pos_end > max_ctx_) fail("kv cache: {} tokens exceed the context of {}", pos_end, max_ctx_);
  }

 private:
  Backend* be_;
  int64_t n_layers_, width_, n_slots_, max_ctx_;
  size_t n_;
  float* data_;
};

}  // namespace fathom
