#pragma once
// Training state of one checkpoint tensor: fp32 master weights and their gradient, on the
// host. Training runs on the host in fp32 (the naive forms HF and DeepSeek's reference train
// with); inference keeps its own prepared copies through the backend.
#include <cstdint>
#include <string>
#include <vector>

namespace fathom::train {

struct Param {
  std::string name;            // the checkpoint tensor name (HF layout)
  std::vector<int64_t> shape;  // as in the checkpoint: [out, in] for linears
  std::vector<float> w;        // [numel] fp32 master weights
  std::vector<float> g;        // [numel] gradient; backward passes add into it
  // false: not an optimizer parameter (the router's e_score_correction_bias, which moves
  // only by the balancing rule); it has no gradient entry.
  bool trainable = true;
  bool decay = true;  // AdamW weight decay applies (tensors with >= 2 dims)

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.empty() ? 1 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? (shape.empty() ? 1 : shape[0]) : shape[1]; }
};

// B sequences of T rows each, laid out sequence-major: row = b * T + t. Attention is causal
// within a sequence; per-sequence terms (the balance loss) are taken over its T rows.
struct Seqs {
  int64_t B = 1, T = 1;
  int64_t rows() const { return B * T; }
};

// One batch: B sequences of T tokens, and which tokens are loss targets.
struct Batch {
  int64_t B = 0, T = 0;
  std::vector<int32_t> ids;     // [B, T]
  std::vector<uint8_t> target;  // [B, T] 1: token t is a target (row t-1 predicts it)
};

}  // namespace fathom::train
