#pragma once
// Feed-forward layers for training, forward and backward: the SwiGLU MLP and DeepSeekMoE.
// The MoE's gradient flows through the gating weights of the chosen experts (sigmoid or
// softmax scoring, norm_topk_prob, routed_scaling_factor); selection itself (greedy,
// group-limited, noaux_tc with the correction bias) is route_token's, exactly as inference
// picks. Backward adds into dx and into every parameter's gradient.
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "io/config.h"
#include "train/blas.h"
#include "train/param.h"

namespace fathom::train {

struct MlpParams {
  Param *gate = nullptr, *up = nullptr, *down = nullptr;  // [I, D], [I, D], [D, I]
  Param *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;  // optional (Llama mlp_bias)
};

struct MlpSaved {
  std::vector<float> g, u, h;  // [rows, I]: gate and up projections, silu(g) * u
};

class TrainMlp {
 public:
  explicit TrainMlp(MlpParams p);
  // x: [rows, D]; y: [rows, D] (overwritten, or added to with accumulate)
  void forward(int64_t rows, const float* x, float* y, MlpSaved& sv, bool accumulate = false,
               const Compute& cx = {}) const;
  // dy: [rows, D]; dx: [rows, D] += ...
  void backward(int64_t rows, const MlpSaved& sv, const float* x, const float* dy, float* dx,
                const Compute& cx = {}) const;
  int64_t inner() const { return p_.gate->shape[0]; }

 private:
  MlpParams p_;
};

struct MoeParams {
  Param* router = nullptr;       // [E, D]
  Param* router_bias = nullptr;  // [E] e_score_correction_bias or null; selects, never weights
  std::vector<MlpParams> experts;  // [E]
  MlpParams shared;                // shared experts (gate null: none)
};

// The sequence-wise balance loss's settings for one forward/backward.
struct BalanceOpts {
  // L = alpha * Σ_i f_i P_i per sequence (see train.json); the gradient of each sequence's
  // term is scaled by `seq_weight` (1 / global number of sequences: the batch mean).
  double alpha = 0;
  double seq_weight = 1;
};

struct MoeSaved {
  std::vector<float> scores;     // [rows, E] sigmoid or softmax of the router logits
  std::vector<int32_t> ids;      // [rows, K] chosen experts
  std::vector<float> weights;    // [rows, K] their gating weights (after norm and scaling)
  std::vector<std::vector<int32_t>> rows_of;  // [E] rows routed to each expert, ascending
  std::vector<std::vector<int32_t>> slot_of;  // [E] the k slot of each of those rows
  std::vector<std::vector<float>> xe;         // [E] gathered inputs [n_e, D]
  std::vector<MlpSaved> expert;               // [E]
  std::vector<std::vector<float>> ye;         // [E] expert outputs before weighting [n_e, D]
  MlpSaved shared;
  std::vector<float> f;  // [B, E] balance f_i per sequence (no gradient)
};

struct MoeStats {
  std::vector<double> load;  // [E] how many rows chose each expert (this forward)
  double balance = 0;        // Σ over sequences of alpha * Σ_i f_i P_i (unscaled by the batch mean)
};

class TrainMoe {
 public:
  TrainMoe(const ModelConfig& cfg, MoeParams p);
  // x: [rows, D]; y: [rows, D] (overwritten). Adds this forward's loads into stats.load and
  // its balance term into stats.balance.
  void forward(const Seqs& s, const float* x, float* y, MoeSaved& sv, const BalanceOpts& bal, MoeStats& stats,
               const Compute& cx) const;
  // dy: [rows, D]; dx: [rows, D] += ... (the balance loss's gradient included)
  void backward(const Seqs& s, const MoeSaved& sv, const float* x, const float* dy, float* dx,
                const BalanceOpts& bal, const Compute& cx) const;
  int64_t experts() const { return int64_t(p_.experts.size()); }

 private:
  const ModelConfig& cfg_;
  MoeParams p_;
  std::vector<TrainMlp> experts_;
  TrainMlp shared_;
};

}  // namespace fathom::train
