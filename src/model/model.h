#pragma once
// The model interface the runtime drives. It knows about batches of sequence chunks and a KV
// cache pool; it knows nothing about requests, sampling or HTTP.
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backend/kv_cache.h"
#include "io/safetensors.h"
#include "io/config.h"
#include "layers/common.h"
#include "layers/ffn.h"

namespace fathom {

// Called with named intermediate tensors ("embed", "layer.3", "final_norm") of shape
// [rows, cols] in host memory, so they can be dumped and diffed layer by layer.
using TraceFn = std::function<void(const std::string& name, const float* data, int64_t rows, int64_t cols)>;

// One sequence's new tokens, at positions pos .. pos+n-1 of cache slot `slot`.
struct SeqChunk {
  int64_t slot = 0;
  int64_t pos = 0;
  const int32_t* tokens = nullptr;
  int64_t n = 0;
  bool all_logits = false;  // logits for every token, else only for the last
};

// Rows for DeepSeek's multi-token prediction (MTP) module, at positions pos .. pos+n-1 of cache
// slot `slot` of the module's own cache. Row i joins a hidden state at position pos+i (the main
// model's after the final norm, or a module output when drafting further ahead) with the token
// that follows that position; its logits predict the token after that one.
struct MtpChunk {
  int64_t slot = 0;
  int64_t pos = 0;
  const float* hidden = nullptr;    // [n, hidden] host memory
  const int32_t* tokens = nullptr;  // [n] the token after each row's position
  int64_t n = 0;
  bool all_logits = false;  // logits for every row, else only for the last
};

struct ForwardOpts {
  AttnMode attn = AttnMode::Absorbed;
  const TraceFn* trace = nullptr;
  // When set: the hidden states after the final norm, [rows, hidden] for every row of the
  // batch (host memory), e.g. for DeepSeek's MTP modules.
  float* final_hidden = nullptr;
};

struct LoadOpts {
  int threads = 0;             // 0: all cores
  std::string quant;           // "", "q8_0", "q4_0": requantize linear weights at load
  bool progress = false;       // progress bar on stderr
  bool repack = true;          // let the backend rearrange block formats for its fastest kernel
  ExpertPlacement experts = {};  // routed experts this process holds (empty: all)
  // Scan every weight value for NaN/Inf (--check-weights); by default a bounded sample of
  // each tensor is checked.
  bool check_weights = false;
  // Where the tensors come from instead of the directory's safetensors (e.g. a training
  // run's weights in memory, for sampling from the current policy).
  std::function<TensorStore()> store;
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  // Floats per token per layer in the KV cache.
  virtual int64_t kv_width() const = 0;
  // Bytes of weights held in memory (mapped or owned).
  virtual size_t weight_bytes() const = 0;
  // Bytes of weights read to decode one token (active experts only).
  virtual size_t active_bytes_per_token() const = 0;
  // The backend every op of this model runs on (its buffers and caches come from it too).
  virtual Backend& backend() const = 0;

  // Runs the chunks as one batch. logits: [rows, vocab] host memory, where rows counts, per
  // chunk in order, n if all_logits else 1. Not reentrant: one forward at a time per model.
  virtual void forward(const std::vector<SeqChunk>& batch, KvCache& cache, float* logits,
                       const ForwardOpts& opts = {}) = 0;

  KvCache make_cache(int64_t n_slots, int64_t max_ctx) const {
    return KvCache(backend(), config().num_hidden_layers, kv_width(), n_slots, max_ctx);
  }

  // DeepSeek's MTP modules the checkpoint carries (0: none, and mtp_forward fails).
  virtual int64_t mtp_modules() const { return 0; }
  // Runs MTP module `module` over the chunks as one batch, against `cache` (from
  // make_mtp_cache). logits: [rows, vocab] host, rows counted as in forward(). hidden_out
  // (optional): [all rows, hidden] host, the module's output before its head norm, the hidden
  // state that drafts one more token ahead. Not reentrant, and not concurrent with forward().
  virtual void mtp_forward(int64_t module, const std::vector<MtpChunk>& batch, KvCache& cache, float* logits,
                           float* hidden_out, const ForwardOpts& opts = {});
  // One cache layer per MTP module, `kv_width` wide like the main cache.
  KvCache make_mtp_cache(int64_t n_slots, int64_t max_ctx) const {
    return KvCache(backend(), std::max<int64_t>(1, mtp_modules()), kv_width(), n_slots, max_ctx);
  }
};

// Loads a checkpoint directory (config.json + safetensors), picking the family from the config.
std::unique_ptr<Model> load_model(const std::string& dir, const LoadOpts& opts = {});
// A model from a parsed config and opts.store (required); `name` labels errors.
std::unique_ptr<Model> load_model(ModelConfig cfg, const std::string& name, const LoadOpts& opts);

}  // namespace fathom
