#pragma once
// A model held for training: fp32 master weights for every tensor of the family's role
// table, and the forward and backward of DeepSeek-V3's objective (next-token CE, MTP CE,
// the sequence-wise balance loss) over the training layers. Every family fathom runs:
// DeepSeek V2/V3 (MLA, DeepSeekMoE, MTP), Qwen2 and Llama (GQA, SwiGLU).
#include <cstdint>
#include <functional>
#include <map>
#include <tuple>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/thread_pool.h"
#include "io/config.h"
#include "model/roles.h"
#include "train/attention.h"
#include "train/ffn.h"
#include "train/blas.h"
#include "train/param.h"

namespace fathom::train {

// A per-token loss on the main head in place of its CE (GRPO's surrogate and KL): called once
// per pass with every row's log-probability of its target and the entropy there; it fills
// dlogp with dL/dlogp (the step's scaling included), or leaves it when there is no backward.
struct TokenTerms {
  int64_t rows = 0;                 // B * T; row b*T + t predicts token t+1 of sequence b
  const int32_t* targets = nullptr; // [rows] the predicted token, -1 where none
  const float* logp = nullptr;      // [rows] log p(target), 0 where none
  const float* entropy = nullptr;   // [rows]
  float* dlogp = nullptr;           // [rows] to fill (zeros on entry)
};

// The objective's weights (V3: λ 0.3 then 0.1, α 0.0001).
struct Objective {
  double mtp_weight = 0;     // λ: L = L_main + λ · mean over MTP modules of their CE
  double balance_alpha = 0;  // α of the sequence-wise balance loss (0: off)
  std::function<void(const TokenTerms&)> token_loss;  // set: replaces the main CE
  // token_loss sees log softmax(logits / this): the distribution completions were sampled
  // from at that temperature, so GRPO's ratios and KL are those of the sampler.
  float token_temperature = 1.0f;

  static Objective weights(double mtp, double alpha) {
    Objective o;
    o.mtp_weight = mtp;
    o.balance_alpha = alpha;
    return o;
  }
};

// Denominators of the means, over the whole optimizer step (every micro-batch and rank), so
// that accumulated and all-reduced gradients are those of one big batch.
struct LossScale {
  int64_t main_targets = 1;          // main CE targets
  std::vector<int64_t> mtp_targets;  // [modules] targets of each MTP module
  int64_t sequences = 1;             // sequences: the balance loss is their mean
};
// The denominators of one batch, for `modules` MTP modules (add batches' for a step).
LossScale count_targets(const Batch& b, int64_t modules);

// What one forward (and backward) measured. Sums, not means: the caller divides by the
// step's LossScale after adding micro-batches and ranks.
struct PassStats {
  double main_sum = 0;              // Σ CE over main targets
  int64_t main_count = 0, main_correct = 0;
  std::vector<double> mtp_sum;      // [modules] Σ CE over each module's targets
  std::vector<int64_t> mtp_count;   // [modules]
  double balance_sum = 0;           // Σ over MoE layers and sequences of α Σ_i f_i P_i
  std::vector<std::vector<double>> load;  // [MoE layers][E] expert selections, in moe_layers() order
};

class TrainModel {
 public:
  // An HF-layout checkpoint: config.json and safetensors in any stored format fathom reads
  // (f32, bf16, f16, FP8 with block scales, q8_0, q4_0), widened to fp32.
  static std::unique_ptr<TrainModel> load(const std::string& dir);
  // A fresh model from a config, initialized as HF does: normal(0, initializer_range) for
  // matrices and embeddings, ones for norms, zeros for biases and router biases.
  static std::unique_ptr<TrainModel> init(const nlohmann::json& config, uint64_t seed);

  TrainModel(const TrainModel&) = delete;
  TrainModel& operator=(const TrainModel&) = delete;

  const ModelConfig& config() const { return cfg_; }
  const nlohmann::json& config_json() const { return cfg_json_; }
  int64_t mtp_modules() const { return int64_t(mtp_.size()); }

  // Every tensor held, in checkpoint (role table) order; MTP modules' copies of the
  // embedding and output head are not held (they share the main ones).
  const std::vector<Param*>& params() const { return all_; }
  std::vector<Param*> trainable() const;
  // The MoE layers, main layers then MTP layers: their checkpoint layer index and router
  // e_score_correction_bias (null when the family has none).
  struct MoeLayer {
    int64_t layer;
    Param* bias;
  };
  const std::vector<MoeLayer>& moe_layers() const { return moe_layers_; }
  Param* find(const std::string& name) const;
  // For saving: the held tensor a checkpoint tensor is written from (the main embedding and
  // head for the MTP copies), or null.
  const Param* source_of(const WeightSpec& spec) const;

  void zero_grad();
  // Forward, and unless `backward` is false, backward of one micro-batch: gradients ADD
  // into the parameters', scaled by `scale`.
  PassStats step(const Batch& b, const Objective& obj, const LossScale& scale, bool backward, const Compute& cx);
  // Auxiliary-loss-free balancing: bias_i += γ · sign(mean_j load_j − load_i) per router
  // (load: [MoE layers][E], the step's selections over every token).
  void update_biases(const std::vector<std::vector<double>>& load, double gamma);

  ~TrainModel();
  struct Layer;  // a decoder layer's training modules
  struct Mtp;    // an MTP module's

 private:
  TrainModel(ModelConfig cfg, nlohmann::json cfg_json);
  // Holds the table's tensors (of the first `mtp_present` MTP modules); `fill` gives each
  // its values, or returns false to leave an optional one out.
  void hold(int64_t mtp_present, const std::function<bool(const WeightSpec&, Param&)>& fill);
  void build();  // the layers, from the held tensors
  Param* at(Role r, int64_t layer = -1, int64_t expert = -1) const;

  ModelConfig cfg_;
  nlohmann::json cfg_json_;
  std::vector<std::unique_ptr<Param>> owned_;
  std::vector<Param*> all_;
  std::map<std::tuple<int, int64_t, int64_t>, Param*> by_role_;
  std::vector<MoeLayer> moe_layers_;
  RopeTable rope_;
  Param *embed_ = nullptr, *final_norm_ = nullptr, *head_ = nullptr;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<std::unique_ptr<Mtp>> mtp_;
  std::vector<float> logits_;  // [rows, V] kept between steps: the largest buffer of a step
};

}  // namespace fathom::train
