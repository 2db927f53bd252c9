#include "runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace fathom {

int32_t argmax(const float* x, int64_t n) {
  // The largest value first, in 8 independent chains (a single compare-and-branch chain over
  // a 100k+ vocabulary took ~1% of a decode step), then its first index. A NaN never wins,
  // as in a plain scan, unless it is x[0].
  if (n <= 0) return 0;
  float m8[8];
  std::fill(m8, m8 + 8, x[0]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) m8[j] = x[i + j] > m8[j] ? x[i + j] : m8[j];
  float m = x[0];
  for (float v : m8) m = v > m ? v : m;
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  for (int64_t k = 0; k < n; ++k)
    if (x[k] == m) return int32_t(k);
  return 0;
}

Sampler::Sampler(const SamplingParams& p, int64_t vocab) : p_(p), vocab_(vocab), rng_(p.seed) {
  idx_.resize(size_t(vocab));
  counts_.assign(size_t(vocab), 0);
  seen_.reserve(256);
  probs_.resize(size_t(vocab));
}

void Sampler::accept(int32_t token) {
  if (token < 0 || token >= vocab_) return;
  if (counts_[size_t(token)]++ == 0) seen_.push_back(token);
}

void Sampler::penalize(float* logits) {
  for (int32_t tok : seen_) logits[tok] -= p_.presence_penalty + p_.frequency_penalty * float(counts_[size_t(tok)]);
  if (want_logprobs_) {
    logprobs_.assign(logits, logits + vocab_);
    float m = *std::max_element(logprobs_.begin(), logprobs_.end());
    double s = 0;
    for (float v : logprobs_) s += std::exp(double(v - m));
    const float lse = m + float(std::log(s));
    for (float& v : logprobs_) v -= lse;
  }
}

int64_t Sampler::candidates(const float* logits) {
  // Candidates sorted by logit, cut by top-k, then softmax at temperature, then min-p/top-p.
  std::iota(idx_.begin(), idx_.end(), 0);
  int64_t n = vocab_;
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (p_.top_k > 0 && p_.top_k < n) {
    std::partial_sort(idx_.begin(), idx_.begin() + p_.top_k, idx_.end(), by_logit);
    n = p_.top_k;
  } else {
    std::sort(idx_.begin(), idx_.end(), by_logit);
  }
  const float inv_t = 1.0f / p_.temperature, m = logits[idx_[0]];
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    probs_[size_t(i)] = std::exp((logits[idx_[size_t(i)]] - m) * inv_t);
    sum += probs_[size_t(i)];
  }
  for (int64_t i = 0; i < n; ++i) probs_[size_t(i)] = float(probs_[size_t(i)] / sum);
  if (p_.min_p > 0) {
    const float floor = p_.min_p * probs_[0];
    int64_t k = 1;
    while (k < n && probs_[size_t(k)] >= floor) ++k;
    n = k;
  }
  if (p_.top_p < 1.0f) {
    double c = 0;
    int64_t k = 0;
    while (k < n) {
      c += probs_[size_t(k)];
      ++k;
      if (c >= p_.top_p) break;
    }
    n = k;
  }
  return n;
}

int32_t Sampler::sample(float* logits) {
  penalize(logits);
  if (p_.temperature <= 0.0f) return argmax(logits, vocab_);
  const int64_t n = candidates(logits);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += probs_[size_t(i)];
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), c = 0;
  for (int64_t i = 0; i < n; ++i) {
    c += probs_[size_t(i)];
    if (r < c) return idx_[size_t(i)];
  }
  return idx_[size_t(n - 1)];
}

void Sampler::distribution(float* logits, float* probs) {
  penalize(logits);
  draft_distribution(logits, probs);
}

void Sampler::draft_distribution(const float* logits, float* probs) {
  std::fill(probs, probs + vocab_, 0.0f);
  if (p_.temperature <= 0.0f) {
    probs[argmax(logits, vocab_)] = 1.0f;
    return;
  }
  const int64_t n = candidates(logits);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += probs_[size_t(i)];
  for (int64_t i = 0; i < n; ++i) probs[idx_[size_t(i)]] = float(probs_[size_t(i)] / total);
}

int32_t Sampler::draw(const float* w, int64_t n) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += w[i];
  std::uniform_real_distribution<double> u(0.0, total);
  double r = u(rng_), c = 0;
  int32_t last = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (w[i] <= 0) continue;
    c += w[i];
    last = int32_t(i);
    if (r < c) return last;
  }
  return last;
}

double Sampler::uniform() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

}  // namespace fathom
