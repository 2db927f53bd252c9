// The whole model's gradient against central differences of its loss, on configs the
// goldens do not cover: tied embeddings, Llama's attention and MLP biases with llama3 rope
// scaling, and DeepSeek with two chained MTP modules under the full V3 objective.
#include <gtest/gtest.h>

#include <cmath>

#include "core/random.h"
#include "train/model.h"

namespace fathom::train {
namespace {

nlohmann::json llama_tied() {
  return {{"model_type", "llama"}, {"vocab_size", 50}, {"hidden_size", 16}, {"intermediate_size", 24},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
          {"max_position_embeddings", 64}, {"rms_norm_eps", 1e-5}, {"tie_word_embeddings", true},
          {"attention_bias", true}, {"mlp_bias", true}, {"initializer_range", 0.2},
          {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8}}}};
}

nlohmann::json qwen2_tied() {
  return {{"model_type", "qwen2"}, {"vocab_size", 40}, {"hidden_size", 16}, {"intermediate_size", 20},
          {"num_hidden_layers", 2}, {"num_attention_heads", 2}, {"num_key_value_heads", 1},
          {"max_position_embeddings", 64}, {"tie_word_embeddings", true}, {"initializer_range", 0.2}};
}

nlohmann::json deepseek_two_mtp() {
  return {{"model_type", "deepseek_v3"}, {"vocab_size", 48}, {"hidden_size", 16}, {"intermediate_size", 24},
          {"moe_intermediate_size", 8}, {"num_hidden_layers", 2}, {"num_attention_heads", 2},
          {"num_key_value_heads", 2}, {"max_position_embeddings", 64}, {"q_lora_rank", 12}, {"kv_lora_rank", 8},
          {"qk_nope_head_dim", 8}, {"qk_rope_head_dim", 4}, {"v_head_dim", 8}, {"n_routed_experts", 8},
          {"n_shared_experts", 1}, {"num_experts_per_tok", 2}, {"n_group", 2}, {"topk_group", 1},
          {"topk_method", "noaux_tc"}, {"scoring_func", "sigmoid"}, {"norm_topk_prob", true},
          {"routed_scaling_factor", 2.5}, {"first_k_dense_replace", 1}, {"num_nextn_predict_layers", 2},
          {"initializer_range", 0.2},
          {"rope_scaling", {{"type", "yarn"}, {"factor", 4.0}, {"original_max_position_embeddings", 16},
                            {"beta_fast", 32}, {"beta_slow", 1}, {"mscale", 1.0}, {"mscale_all_dim", 1.0}}}};
}

struct Case {
  const char* name;
  nlohmann::json (*config)();
  Objective obj;
};

double total_loss(TrainModel& m, const Batch& b, const Objective& obj, const LossScale& sc, bool backward) {
  const PassStats st = m.step(b, obj, sc, backward, nullptr);
  double l = st.main_sum / double(sc.main_targets) + st.balance_sum / double(sc.sequences);
  for (size_t k = 0; k < st.mtp_sum.size(); ++k)
    l += obj.mtp_weight / double(st.mtp_sum.size()) * st.mtp_sum[k] / double(sc.mtp_targets[k]);
  return l;
}

class ModelFd : public ::testing::TestWithParam<Case> {};

TEST_P(ModelFd, GradientMatchesCentralDifferences) {
  const Case& c = GetParam();
  auto m = TrainModel::init(c.config(), 11);
  const int64_t V = m->config().vocab_size;
  Batch b;
  b.B = 2;
  b.T = 9;
  for (int64_t i = 0; i < b.B * b.T; ++i) b.ids.push_back(int32_t(splitmix64(uint64_t(i) + 99) % uint64_t(V)));
  b.target.assign(b.ids.size(), 1);
  b.target[0] = b.target[size_t(b.T)] = 0;
  b.target[5] = 0;  // a masked token in the middle (SFT)
  // Central differences need a selection that does not flip under the perturbation (the
  // per-layer MoE test covers varied selections): router biases that dwarf the sigmoid
  // scores pin every token to experts 1 and 2, while the gating weights and the balance
  // loss's P_i still depend on the scores.
  for (const auto& ml : m->moe_layers())
    if (ml.bias)
      for (size_t e = 0; e < ml.bias->w.size(); ++e) ml.bias->w[e] = (e == 1 || e == 2) ? 10.0f : 0.0f;
  const LossScale sc = count_targets(b, c.obj.mtp_weight != 0 ? m->mtp_modules() : 0);
  m->zero_grad();
  total_loss(*m, b, c.obj, sc, true);

  // Directional derivatives along random ±1 directions over every trainable tensor, and one
  // per tensor alone (so a wrong tensor cannot hide behind the others).
  const std::vector<Param*> ps = m->trainable();
  auto check = [&](const std::vector<Param*>& which, uint64_t seed, const std::string& what) {
    std::vector<std::vector<float>> dir;
    double analytic = 0, gnorm = 0;
    for (size_t i = 0; i < which.size(); ++i) {
      std::vector<float> d(which[i]->w.size());
      for (size_t j = 0; j < d.size(); ++j) d[j] = (splitmix64(seed * 7919 + i * 104729 + j) & 1) ? 1.0f : -1.0f;
      for (size_t j = 0; j < d.size(); ++j) {
        analytic += double(which[i]->g[j]) * d[j];
        gnorm += double(which[i]->g[j]) * which[i]->g[j];
      }
      dir.push_back(std::move(d));
    }
    const float eps = 1e-3f;
    auto shift = [&](float s) {
      for (size_t i = 0; i < which.size(); ++i)
        for (size_t j = 0; j < dir[i].size(); ++j) which[i]->w[j] += s * dir[i][j];
    };
    const std::vector<Param*> all = m->params();
    std::vector<std::vector<float>> keep;
    for (Param* p : which) keep.push_back(p->w);
    shift(eps);
    const double lp = total_loss(*m, b, c.obj, sc, false);
    for (size_t i = 0; i < which.size(); ++i) which[i]->w = keep[i];
    shift(-eps);
    const double lm = total_loss(*m, b, c.obj, sc, false);
    for (size_t i = 0; i < which.size(); ++i) which[i]->w = keep[i];
    const double numeric = (lp - lm) / (2.0 * eps);
    // fp32 forward: the loss carries ~1e-7 relative rounding, i.e. ~1e-4 in the quotient.
    EXPECT_NEAR(numeric, analytic, 2e-3 * std::max(std::abs(analytic), std::sqrt(gnorm)) + 2e-4) << what;
  };
  for (uint64_t s = 1; s <= 3; ++s) check(ps, s, "all tensors, direction " + std::to_string(s));
  for (size_t i = 0; i < ps.size(); ++i) check({ps[i]}, 100 + i, ps[i]->name);
}

INSTANTIATE_TEST_SUITE_P(Configs, ModelFd,
                         ::testing::Values(Case{"llama_tied_biases_llama3", llama_tied, Objective{}},
                                           Case{"qwen2_tied", qwen2_tied, Objective{}},
                                           Case{"deepseek_two_mtp_modules", deepseek_two_mtp, Objective::weights(0.3, 0.05)}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace fathom::train
