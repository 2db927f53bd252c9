#include "measure/kl.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/random.h"

namespace fathom {

namespace {

// log Σ exp(l) over [V], shifted by the max for range.
double log_sum_exp(const float* l, int64_t V) {
  const float m = *std::max_element(l, l + V);
  double s = 0;
  for (int64_t i = 0; i < V; ++i) s += std::exp(double(l[i]) - m);
  return double(m) + std::log(s);
}

}  // namespace

double kl_divergence(const float* ref, const float* q, int64_t V) {
  const double zr = log_sum_exp(ref, V), zq = log_sum_exp(q, V);
  double kl = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double lp = double(ref[i]) - zr, lq = double(q[i]) - zq;
    kl += std::exp(lp) * (lp - lq);
  }
  return std::max(kl, 0.0);  // rounding can leave a tiny negative for identical inputs
}

void LogitAgreement::add(const float* ref, const float* q, int64_t T, int64_t V) {
  for (int64_t t = 0; t < T; ++t) {
    const float* r = ref + t * V;
    const float* g = q + t * V;
    const double kl = kl_divergence(r, g, V);
    kl_sum += kl;
    kl_max = std::max(kl_max, kl);
    top1_same += std::max_element(r, r + V) - r == std::max_element(g, g + V) - g;
    ++tokens;
  }
}

std::vector<int32_t> pseudo_random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  if (vocab <= 0) fail("pseudo_random_ids: vocab {} is not positive", vocab);
  std::vector<int32_t> ids(size_t(std::max<int64_t>(n, 0)));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(splitmix64(splitmix64(seed) ^ i) % uint64_t(vocab));
  return ids;
}

LogitAgreement compare_models(Model& ref, Model& quant, const KlOpts& o) {
  const int64_t V = ref.config().vocab_size;
  if (quant.config().vocab_size != V)
    fail("kl: the models disagree on vocab_size ({} vs {})", V, quant.config().vocab_size);
  std::vector<std::vector<int32_t>> seqs = o.seqs;
  if (seqs.empty()) {
    if (o.n_seqs <= 0 || o.len <= 0) fail("kl: need at least one sequence of at least one token");
    for (int64_t s = 0; s < o.n_seqs; ++s) seqs.push_back(pseudo_random_ids(o.len, V, o.seed * 7919 + uint64_t(s)));
  }
  ForwardOpts fo;
  fo.attn = o.attn;
  LogitAgreement agg;
  for (const auto& ids : seqs) {
    const int64_t T = int64_t(ids.size());
    if (T == 0) fail("kl: empty sequence");
    std::vector<float> lr(size_t(T * V)), lq(size_t(T * V));  // [T, V] each
    {
      KvCache cache = ref.make_cache(1, T);
      ref.forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, lr.data(), fo);
    }
    {
      KvCache cache = quant.make_cache(1, T);
      quant.forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, lq.data(), fo);
    }
    agg.add(lr.data(), lq.data(), T, V);
  }
  return agg;
}

}  // namespace fathom
