#pragma once
// How far a quantized model's next-token distributions are from a reference's:
// KL(P_ref ‖ P_quant) per token and top-1 agreement, over the same token sequences.
#include <cstdint>
#include <vector>

#include "model/model.h"

namespace fathom {

// KL(softmax(ref) ‖ softmax(q)) in nats for one token's logits [V], computed in double.
double kl_divergence(const float* ref_logits, const float* q_logits, int64_t V);

// Running totals over tokens.
struct LogitAgreement {
  double kl_sum = 0, kl_max = 0;
  int64_t tokens = 0, top1_same = 0;

  // ref, q: [T, V] logits of T tokens.
  void add(const float* ref, const float* q, int64_t T, int64_t V);
  double mean_kl() const { return tokens ? kl_sum / double(tokens) : 0.0; }
  double top1() const { return tokens ? double(top1_same) / double(tokens) : 0.0; }
};

// n deterministic pseudo-random token ids in [0, vocab): the same for a given seed everywhere.
std::vector<int32_t> pseudo_random_ids(int64_t n, int64_t vocab, uint64_t seed);

struct KlOpts {
  std::vector<std::vector<int32_t>> seqs;  // empty: n_seqs pseudo-random sequences of len ids
  int64_t n_seqs = 4;
  int64_t len = 64;
  uint64_t seed = 0;
  AttnMode attn = AttnMode::Absorbed;
};

// Runs every sequence through both models (one forward each, logits for every position).
LogitAgreement compare_models(Model& ref, Model& quant, const KlOpts& opts);

}  // namespace fathom
