#pragma once
// Token sampling from logits: greedy at temperature 0, else temperature / top-k / top-p /
// min-p with a seeded generator, plus presence and frequency penalties.
#include <cstdint>
#include <random>
#include <vector>

namespace fathom {

struct SamplingParams {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;
  int32_t top_k = 0;         // 0: off
  float min_p = 0.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
};

class Sampler {
 public:
  Sampler(const SamplingParams& p, int64_t vocab);
  // Picks the next token; `logits` [vocab] may be modified (penalties applied in place).
  int32_t sample(float* logits);
  // Records a generated token (for the penalties).
  void accept(int32_t token);

  // Speculative decoding. distribution() writes probs [vocab], the distribution sample() would
  // draw from (penalties applied to `logits` in place; one-hot at temperature 0).
  // draft_distribution() is the same without the penalties and leaves `logits` as it is.
  void distribution(float* logits, float* probs);
  void draft_distribution(const float* logits, float* probs);
  // An index drawn from weights [n] (not necessarily normalized), and a uniform in [0, 1),
  // from the sampler's generator.
  int32_t draw(const float* weights, int64_t n);
  double uniform();
  bool greedy() const { return p_.temperature <= 0.0f; }
  // log-softmax of the (penalized) logits the last sample() saw, for logprobs.
  const std::vector<float>& last_logprobs() const { return logprobs_; }
  void set_want_logprobs(bool on) { want_logprobs_ = on; }

 private:
  void penalize(float* logits);
  // Sorts the candidates into idx_ and their normalized probabilities into probs_; returns
  // how many survive top-k / min-p / top-p (temperature > 0 only).
  int64_t candidates(const float* logits);

  SamplingParams p_;
  int64_t vocab_;
  std::mt19937_64 rng_;
  std::vector<int32_t> counts_;  // [vocab] times each token was generated
  std::vector<int32_t> seen_;    // tokens with a nonzero count, in first-seen order
  std::vector<int32_t> idx_;   // [vocab] reused
  std::vector<float> probs_;   // [vocab] reused
  std::vector<float> logprobs_;
  bool want_logprobs_ = false;
};

// Index of the largest logit; ties go to the lowest index (as torch.argmax).
int32_t argmax(const float* logits, int64_t n);

}  // namespace fathom
