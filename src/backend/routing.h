#pragma once
// DeepSeekMoE expert selection for one token, from the router's raw logits: the reference
// every backend's moe_route is held to (the CPU backend runs it as is).
#include <cstdint>

#include "io/config.h"

namespace fathom {

struct RouterConfig {
  int64_t n_experts = 0, top_k = 0, n_group = 1, topk_group = 1;
  ScoringFunc scoring = ScoringFunc::Softmax;
  TopkMethod method = TopkMethod::Greedy;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  static RouterConfig from(const ModelConfig& c);
};

// logits: [n_experts]; bias: [n_experts] or null (used only to select, never to weight).
// Writes top_k expert ids (in selection order) and their weights. scratch: [2 * n_experts].
void route_token(const RouterConfig& rc, const float* logits, const float* bias, int32_t* ids, float* weights,
                 float* scratch);

}  // namespace fathom
