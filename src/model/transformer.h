#pragma once
// The decoder stack every family shares: embed → decoder layer × L → norm → lm_head. A family
// file only builds the layers from its role table.
#include <memory>
#include <vector>

#include "layers/decoder.h"
#include "layers/rope.h"
#include "model/model.h"
#include "model/weights.h"

namespace fathom {

// DeepSeek's multi-token prediction module k (present when the checkpoint has it): the next
// token's embedding and the previous depth's hidden state, normed, joined by eh_proj, then
// one decoder layer and a shared-head norm + output projection.
struct MtpModule {
  const Weight* enorm = nullptr;      // [D]
  const Weight* hnorm = nullptr;      // [D]
  const Weight* eh_proj = nullptr;    // [D, 2D]
  const Weight* embed = nullptr;      // [V, D] (DeepSeek-V3 ships a copy of the main one)
  const Weight* head_norm = nullptr;  // [D]
  const Weight* head = nullptr;       // [V, D]
  DecoderLayer layer;
};

class Transformer : public Model {
 public:
  Transformer(ModelConfig cfg, const std::string& dir, const RoleTable& table, const LoadOpts& opts);

  const ModelConfig& config() const override { return cfg_; }
  int64_t kv_width() const override { return kv_width_; }
  size_t weight_bytes() const override { return weights_->bytes(); }
  size_t active_bytes_per_token() const override;
  Backend& backend() const override { return *be_; }
  void forward(const std::vector<SeqChunk>& batch, KvCache& cache, float* logits,
               const ForwardOpts& opts) override;

  const std::vector<MtpModule>& mtp() const { return mtp_; }
  int64_t mtp_modules() const override { return int64_t(mtp_.size()); }
  void mtp_forward(int64_t module, const std::vector<MtpChunk>& batch, KvCache& cache, float* logits,
                   float* hidden_out, const ForwardOpts& opts) override;

 protected:
  // Builds the MTP modules the checkpoint has, with the family's attention and FFN builders.
  void build_mtp(const std::function<DecoderLayer(int64_t layer)>& decoder_layer);

  ModelConfig cfg_;
  std::unique_ptr<Backend> be_;  // first: every weight and buffer below is its memory
  std::unique_ptr<Weights> weights_;
  std::unique_ptr<Rope> rope_;
  int64_t kv_width_ = 0;
  const Weight* embed_ = nullptr;       // [V, D]
  const Weight* final_norm_ = nullptr;  // [D]
  const Weight* lm_head_ = nullptr;     // [V, D]
  std::vector<DecoderLayer> layers_;
  std::vector<MtpModule> mtp_;

 private:
  // Appends one chunk's rows to rows_ / tokens_ / logit_rows_, checking ids and the cache.
  void add_rows(int64_t slot, int64_t pos, const int32_t* tokens, int64_t n, bool all_logits, const KvCache& cache);
  // logits [NL, V] (host) = head · h[logit_rows_] (h: [R, D] backend), failing on NaN / Inf.
  void project_logits(const Weight& head, const float* h, float* logits);
  // What a decoder layer of this forward runs with: the backend, the batch's rows, the cache.
  LayerCtx layer_ctx(KvCache& cache, AttnMode attn);
  // Calls opts.trace with x [R, D] (backend memory) when tracing.
  void trace(const ForwardOpts& opts, const std::string& name, const float* x);

  Activations acts_;
  BatchRows rows_;
  std::vector<int32_t> tokens_;      // [rows] the batch's token ids
  std::vector<int32_t> logit_rows_;  // rows whose logits are wanted
  Buf logits_buf_;                   // [NL, V] for a backend whose memory is not the host's
  std::vector<float> trace_buf_;
  Buf mtp_cat_;  // [R, 2D] enorm(embedding) | hnorm(hidden), the MTP module's eh_proj input
};

// Family builders (one file each).
std::unique_ptr<Model> build_deepseek(const std::string& dir, ModelConfig cfg, const LoadOpts& opts);
std::unique_ptr<Model> build_qwen2(const std::string& dir, ModelConfig cfg, const LoadOpts& opts);
std::unique_ptr<Model> build_llama(const std::string& dir, ModelConfig cfg, const LoadOpts& opts);

}  // namespace fathom
