// Speculative decoding while sampling: rejection sampling keeps the output distribution the
// main model's. On the echo model (12 tokens, drafts often accepted and often rejected) the
// tokens sampled over many seeds follow, position by position, the distribution enumerated
// here from plain forwards in double precision, as plain sampling does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "runtime/generate.h"
#include "spec_fixture.h"

namespace fathom {
namespace {

constexpr int kNew = 4;  // t1 from the prompt's step; then 3 drafts, verified with a bonus token

struct Params {
  float temperature;
  int32_t top_k;
};

// The sampling distribution of one logits row, as the sampler defines it, in double precision.
std::vector<double> probs_of(const float* logits, int64_t V, const Params& p) {
  std::vector<int32_t> idx(static_cast<size_t>(V));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const int64_t n = p.top_k > 0 ? std::min<int64_t>(p.top_k, V) : V;
  std::vector<double> out(size_t(V), 0.0);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t v = idx[size_t(i)];
    sum += out[size_t(v)] = std::exp((double(logits[v]) - logits[idx[0]]) / p.temperature);
  }
  for (double& x : out) x /= sum;
  return out;
}

// marg[j][v]: the probability that generated token j is v, by enumerating every prefix.
void enumerate(Model& m, std::vector<int32_t>& seq, double prob, int depth, const Params& p,
               std::vector<std::vector<double>>& marg) {
  const int64_t V = m.config().vocab_size, T = int64_t(seq.size());
  KvCache cache = m.make_cache(1, T);
  std::vector<float> logits(static_cast<size_t>(V));
  m.forward({SeqChunk{0, 0, seq.data(), T, false}}, cache, logits.data(), {});
  const auto q = probs_of(logits.data(), V, p);
  for (int64_t v = 0; v < V; ++v) {
    if (q[size_t(v)] == 0) continue;
    marg[size_t(depth)][size_t(v)] += prob * q[size_t(v)];
    if (depth + 1 < kNew) {
      seq.push_back(int32_t(v));
      enumerate(m, seq, prob * q[size_t(v)], depth + 1, p, marg);
      seq.pop_back();
    }
  }
}

// Pearson's chi-square of the counts against the probabilities (cells expecting fewer than 5
// pooled), and its degrees of freedom.
std::pair<double, int> chi_square(const std::vector<int64_t>& counts, const std::vector<double>& probs, int64_t n) {
  double chi = 0, pooled_e = 0, pooled_o = 0;
  int cells = 0;
  for (size_t v = 0; v < probs.size(); ++v) {
    const double e = probs[v] * double(n);
    if (e < 5) {
      pooled_e += e, pooled_o += double(counts[v]);
      continue;
    }
    chi += (double(counts[v]) - e) * (double(counts[v]) - e) / e;
    ++cells;
  }
  if (pooled_e > 0) {
    chi += (pooled_o - pooled_e) * (pooled_o - pooled_e) / std::max(pooled_e, 1e-9);
    ++cells;
  }
  return {chi, cells - 1};
}

TEST(RejectionSampling, OutputFollowsTheMainModel) {
  auto m = test::load_echo();
  const int64_t V = m->config().vocab_size;
  const std::vector<int32_t> prompt = {3, 8, 1, 5, 10};
  const int64_t N = 4000;
  for (const Params& p : {Params{1.0f, 0}, Params{0.7f, 5}}) {
    std::vector<std::vector<double>> exact(kNew, std::vector<double>(size_t(V), 0.0));
    std::vector<int32_t> seq = prompt;
    enumerate(*m, seq, 1.0, 0, p, exact);
    for (int64_t draft : {0, 3}) {
      GenerateOpts g;
      g.max_new_tokens = kNew;
      g.sampling.temperature = p.temperature;
      g.sampling.top_k = p.top_k;
      g.draft = draft;
      std::vector<std::vector<int64_t>> counts(kNew, std::vector<int64_t>(size_t(V), 0));
      SpecStats stats;
      Session s(*m, int64_t(prompt.size()) + kNew);
      for (int64_t seed = 0; seed < N; ++seed) {
        g.sampling.seed = uint64_t(seed) * 7919 + 1;
        const auto out = s.generate(prompt, g);
        ASSERT_EQ(out.size(), size_t(kNew));
        for (int j = 0; j < kNew; ++j) ++counts[size_t(j)][size_t(out[size_t(j)])];
        stats.drafted += s.spec_stats().drafted;
        stats.accepted += s.spec_stats().accepted;
      }
      if (draft > 0) {  // both branches of the test ran many times
        EXPECT_GT(stats.accepted, stats.drafted / 5);
        EXPECT_LT(stats.accepted, stats.drafted * 4 / 5);
      }
      for (int j = 0; j < kNew; ++j) {
        const auto [chi, df] = chi_square(counts[size_t(j)], exact[size_t(j)], N);
        double tv = 0;
        for (int64_t v = 0; v < V; ++v)
          tv += std::abs(double(counts[size_t(j)][size_t(v)]) / double(N) - exact[size_t(j)][size_t(v)]);
        // chi-square with df <= 11 exceeds 40 with probability below 1e-4.
        EXPECT_LT(chi, 40.0) << "token " << j << " draft " << draft << " T " << p.temperature << " df " << df;
        EXPECT_LT(tv / 2, 0.04) << "token " << j << " draft " << draft << " T " << p.temperature;
      }
      std::printf("T %.1f top_k %d draft %lld: acceptance %.3f\n", p.temperature, p.top_k, (long long)draft,
                  stats.acceptance());
    }
  }
}

}  // namespace
}  // namespace fathom
