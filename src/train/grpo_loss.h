#pragma once
// GRPO's per-token objective (DeepSeekMath, R1), its common variants, and its gradient with
// respect to each token's log-probability; the model's backward takes it from there
// (TrainModel::step with Objective::token_loss).
//
// For completion i of a batch and its token t, with r = exp(logp - logp_old):
//   surrogate  s = min(r·A_i, clip(r, 1 - ε_low, 1 + ε_high)·A_i)
//   KL         k = exp(ref - logp) - (ref - logp) - 1        (the k3 estimator, ≥ 0)
//   loss       L = Σ_i Σ_t w_i · (β·k - s)
// with the weights w_i of the normalization:
//   SeqMean   (GRPO):     1 / (N · |o_i|)   a mean over completions of each one's token mean
//   TokenMean (DAPO):     1 / Σ_i |o_i|      a mean over all tokens of the batch
//   TokenSum  (Dr. GRPO): 1 / (N · L_max)   a constant: no length bias
// N counts the completions of the whole optimizer step (every micro-batch).
#include <cstdint>
#include <string>
#include <vector>

#include "train/model.h"

namespace fathom::train {

enum class LossNorm { SeqMean, TokenMean, TokenSum };
LossNorm parse_loss_norm(const std::string& s);  // "seq-mean", "token-mean", "token-sum"

struct GrpoLossOpts {
  double clip_low = 0.2, clip_high = 0.2;  // ε_low, ε_high (clip-higher: ε_high > ε_low)
  double beta = 0.04;                     // β of the KL to the reference (0: off)
  LossNorm norm = LossNorm::SeqMean;
  int64_t max_len = 1;                     // L_max for TokenSum
};

// One completion in a training batch: its rows (row b*T + t predicts token t+1) are those
// whose target is set, within sequence `b`.
struct GrpoSeq {
  int64_t b = 0;           // the batch row it sits in
  double advantage = 0;
  int64_t tokens = 0;      // |o_i|: its targeted tokens
};

// Sums over the tokens of one pass, for the logs.
struct GrpoSums {
  double loss = 0;          // Σ w·(β·k - s)
  double kl = 0;            // Σ k
  double entropy = 0;       // Σ entropy
  double ratio = 0;         // Σ r
  int64_t clipped = 0;      // tokens whose surrogate took the clipped branch
  int64_t tokens = 0;
};

// The inputs of one micro-batch pass: [B*T] rows like TokenTerms, old and reference
// log-probabilities at the same rows, and the completions.
struct GrpoPass {
  int64_t T = 0;
  const std::vector<GrpoSeq>* seqs = nullptr;  // one per batch row b
  const float* old_logp = nullptr;             // [B*T]
  const float* ref_logp = nullptr;             // [B*T] (unused when β = 0)
  int64_t step_seqs = 1;                       // N: completions in the whole step
  int64_t step_tokens = 1;                     // Σ|o_i| over the whole step (TokenMean)
};

// Fills t.dlogp with dL/dlogp and returns the pass's sums:
//   dL/dlogp = w · (β·(1 - exp(ref - logp)) - [unclipped]·A·r)
GrpoSums grpo_token_loss(const TokenTerms& t, const GrpoPass& p, const GrpoLossOpts& o);

// Group-relative advantages of one group's rewards: (r - mean) / (std + 1e-4), or r - mean
// with scale_std false (Dr. GRPO). std is the population standard deviation.
std::vector<double> group_advantages(const std::vector<double>& rewards, bool scale_std);

}  // namespace fathom::train
