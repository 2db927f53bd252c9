#pragma once
// The decoder stack every family shares: embed → [norm → attn → add, norm → ffn → add] × L →
// norm → lm_head. A family file only builds the layers from its weight table.
#include <memory>
#include <vector>

#include "layers/common.h"
#include "layers/rope.h"
#include "model/model.h"
#include "model/weights.h"

namespace fathom {

struct DecoderLayer {
  const std::vector<float>* input_norm = nullptr;  // [D]
  const std::vector<float>* post_norm = nullptr;   // [D]
  std::unique_ptr<AttnLayer> attn;
  std::unique_ptr<FfnLayer> ffn;
  size_t attn_bytes = 0;
};

class Transformer : public Model {
 public:
  Transformer(ModelConfig cfg, std::unique_ptr<Weights> weights, const LoadOpts& opts);

  const ModelConfig& config() const override { return cfg_; }
  int64_t kv_width() const override { return kv_width_; }
  size_t weight_bytes() const override { return weights_->bytes(); }
  size_t active_bytes_per_token() const override;
  ThreadPool& pool() override { return pool_; }
  void forward(const std::vector<SeqChunk>& batch, KvCache& cache, float* logits,
               const ForwardOpts& opts) override;

 protected:
  ModelConfig cfg_;
  std::unique_ptr<Weights> weights_;
  ThreadPool pool_;
  std::unique_ptr<Rope> rope_;
  int64_t kv_width_ = 0;
  const cpu::WeightView* embed_ = nullptr;    // [V, D]
  const std::vector<float>* final_norm_ = nullptr;
  const cpu::WeightView* lm_head_ = nullptr;  // [V, D]
  std::vector<DecoderLayer> layers_;

 private:
  Scratch scratch_;
  BatchRows rows_;
  std::vector<int64_t> logit_rows_;
};

// Each family's weight table (also used to write random checkpoints).
std::vector<WeightSpec> deepseek_weight_table(const ModelConfig& c);
std::vector<WeightSpec> weight_table(const ModelConfig& c);

// Family builders (one file each).
std::unique_ptr<Model> build_deepseek(const std::string& dir, ModelConfig cfg, const LoadOpts& opts);
std::unique_ptr<Model> build_qwen2(const std::string& dir, ModelConfig cfg, const LoadOpts& opts);
std::unique_ptr<Model> build_llama(const std::string& dir, ModelConfig cfg, const LoadOpts& opts);

}  // namespace fathom
