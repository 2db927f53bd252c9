#include "train/grpo_loss.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace fathom::train {

LossNorm parse_loss_norm(const std::string& s) {
  if (s == "seq-mean") return LossNorm::SeqMean;
  if (s == "token-mean") return LossNorm::TokenMean;
  if (s == "token-sum") return LossNorm::TokenSum;
  fail("unknown loss normalization '{}' (seq-mean, token-mean or token-sum)", s);
}

GrpoSums grpo_token_loss(const TokenTerms& t, const GrpoPass& p, const GrpoLossOpts& o) {
  GrpoSums sum;
  const int64_t B = int64_t(p.seqs->size());
  if (p.T <= 0 || B * p.T != t.rows) fail("GRPO loss: {} rows for {} sequences of {}", t.rows, B, p.T);
  for (int64_t b = 0; b < B; ++b) {
    const GrpoSeq& q = (*p.seqs)[size_t(b)];
    double w = 0;
    switch (o.norm) {
      case LossNorm::SeqMean: w = 1.0 / (double(p.step_seqs) * double(std::max<int64_t>(q.tokens, 1))); break;
      case LossNorm::TokenMean: w = 1.0 / double(std::max<int64_t>(p.step_tokens, 1)); break;
      case LossNorm::TokenSum: w = 1.0 / (double(p.step_seqs) * double(std::max<int64_t>(o.max_len, 1))); break;
    }
    for (int64_t i = b * p.T; i < (b + 1) * p.T; ++i) {
      if (t.targets[i] < 0) continue;
      const double lp = t.logp[i], A = q.advantage;
      const double r = std::exp(lp - double(p.old_logp[i]));
      const double lo = 1.0 - o.clip_low, hi = 1.0 + o.clip_high;
      // The min picks the clipped term exactly when r is past the bound on the side A pushes it.
      const bool clipped = (A > 0 && r > hi) || (A < 0 && r < lo);
      const double s = clipped ? std::clamp(r, lo, hi) * A : r * A;
      double k = 0, dk = 0;
      if (o.beta != 0) {
        const double d = double(p.ref_logp[i]) - lp;
        k = std::exp(d) - d - 1.0;
        dk = 1.0 - std::exp(d);
      }
      sum.loss += w * (o.beta * k - s);
      sum.kl += k;
      sum.entropy += t.entropy[i];
      sum.ratio += r;
      sum.clipped += clipped;
      ++sum.tokens;
      t.dlogp[i] = float(w * (o.beta * dk - (clipped ? 0.0 : A * r)));
    }
  }
  return sum;
}

std::vector<double> group_advantages(const std::vector<double>& rewards, bool scale_std) {
  const double n = double(rewards.size());
  double mean = 0, var = 0;
  for (double r : rewards) mean += r;
  mean /= std::max(n, 1.0);
  for (double r : rewards) var += (r - mean) * (r - mean);
  const double sd = std::sqrt(var / std::max(n, 1.0));
  std::vector<double> a;
  a.reserve(rewards.size());
  for (double r : rewards) a.push_back(scale_std ? (r - mean) / (sd + 1e-4) : r - mean);
  return a;
}

}  // namespace fathom::train
