#include "backend/routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "backend/cpu/vmath.h"

namespace fathom {

RouterConfig RouterConfig::from(const ModelConfig& c) {
  RouterConfig r;
  r.n_experts = c.n_routed_experts;
  r.top_k = c.num_experts_per_tok;
  r.n_group = c.n_group;
  r.topk_group = c.topk_group;
  r.scoring = c.scoring_func;
  r.method = c.topk_method;
  // transformers' DeepSeek-V2 port never renormalizes; V3 does when norm_topk_prob is set.
  r.norm_topk_prob = c.arch == Arch::DeepseekV3 && c.norm_topk_prob;
  r.routed_scaling_factor = c.routed_scaling_factor;
  return r;
}

// Indices of the k largest of v[0..n), largest first; ties go to the lower index.
// n ≤ kMaxExperts (checked when the config is read).
static void topk(const float* v, int64_t n, int64_t k, int32_t* out) {
  int32_t idx[kMaxExperts];
  std::iota(idx, idx + n, 0);
  std::partial_sort(idx, idx + k, idx + n, [&](int32_t a, int32_t b) { return v[a] > v[b] || (v[a] == v[b] && a < b); });
  std::copy(idx, idx + k, out);
}

void route_token(const RouterConfig& rc, const float* logits, const float* bias, int32_t* ids, float* weights,
                 float* scratch) {
  const int64_t E = rc.n_experts;
  float* scores = scratch;      // [E] the weights come from these
  float* choice = scratch + E;  // [E] selection scores (biased, group-masked)
  std::copy(logits, logits + E, scores);
  if (rc.scoring == ScoringFunc::Softmax) cpu::softmax(scores, E);
  else
    for (int64_t e = 0; e < E; ++e) scores[e] = 1.0f / (1.0f + std::exp(-scores[e]));
  for (int64_t e = 0; e < E; ++e) choice[e] = scores[e] + (bias ? bias[e] : 0.f);

  if (rc.method != TopkMethod::Greedy && rc.n_group > 1) {
    const int64_t G = rc.n_group, per = E / G;
    float gs[kMaxExperts];  // group scores; n_group ≤ n_experts
    for (int64_t g = 0; g < G; ++g) {
      const float* c = choice + g * per;
      if (rc.method == TopkMethod::NoauxTc) {  // sum of the group's top two biased scores
        float a = -INFINITY, b = -INFINITY;
        for (int64_t i = 0; i < per; ++i) {
          if (c[i] > a) { b = a; a = c[i]; }
          else if (c[i] > b) b = c[i];
        }
        gs[g] = a + b;
      } else {  // group_limited_greedy: the group's best score
        gs[g] = *std::max_element(c, c + per);
      }
    }
    int32_t kp[kMaxExperts];
    topk(gs, G, rc.topk_group, kp);
    // Experts outside the kept groups can never be chosen, whatever their scores.
    for (int64_t g = 0; g < G; ++g) {
      bool kept = std::find(kp, kp + rc.topk_group, int32_t(g)) != kp + rc.topk_group;
      if (!kept) std::fill(choice + g * per, choice + (g + 1) * per, -INFINITY);
    }
  }
  topk(choice, E, rc.top_k, ids);
  float sum = 0.f;
  for (int64_t k = 0; k < rc.top_k; ++k) {
    weights[k] = scores[ids[k]];
    sum += weights[k];
  }
  if (rc.norm_topk_prob)
    for (int64_t k = 0; k < rc.top_k; ++k) weights[k] /= (sum + 1e-20f);
  for (int64_t k = 0; k < rc.top_k; ++k) weights[k] *= float(rc.routed_scaling_factor);
}

}  // namespace fathom
