// Training against references: the loss and every gradient of HF transformers (fp32) for
// tiny-deepseek-v3, tiny-deepseek-v2-lite and tiny-qwen2, and DeepSeek's full V3 objective
// (MTP, balance loss, router-bias rule) from its reference model.py for tiny-deepseek-v3-mtp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "core/thread_pool.h"
#include "io/safetensors.h"
#include "train/model.h"

namespace fathom::train {
namespace {

const std::string kData = FATHOM_TEST_DATA;

std::vector<float> f32(const TensorView& t) {
  EXPECT_EQ(t.dtype, DType::F32) << t.name;
  std::vector<float> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

Batch golden_batch(const TensorStore& g) {
  const TensorView& t = g.get("input_ids");
  Batch b;
  b.B = t.shape[0];
  b.T = t.shape[1];
  for (int64_t i = 0; i < t.numel(); ++i) {
    int64_t v;
    std::memcpy(&v, static_cast<const uint8_t*>(t.data) + 8 * i, 8);
    b.ids.push_back(int32_t(v));
  }
  b.target.assign(b.ids.size(), 1);
  for (int64_t r = 0; r < b.B; ++r) b.target[size_t(r * b.T)] = 0;
  return b;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    den += double(ref[i]) * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

struct GradRun {
  std::unique_ptr<TrainModel> m;
  PassStats st;
  LossScale sc;
};

GradRun run(const std::string& fixture, const Batch& b, const Objective& obj, ThreadPool& pool) {
  GradRun r;
  r.m = TrainModel::load(kData + "/fixtures/" + fixture);
  r.sc = count_targets(b, obj.mtp_weight != 0 ? r.m->mtp_modules() : 0);
  r.m->zero_grad();
  r.st = r.m->step(b, obj, r.sc, true, &pool);
  return r;
}

// Every golden gradient matches within 1e-4 relative L2, and every trainable tensor has one.
void expect_grads(const TrainModel& m, const TensorStore& g, size_t expected_count) {
  size_t n = 0;
  for (const auto& [name, t] : g.all()) {
    if (name.rfind("grad.", 0) != 0) continue;
    ++n;
    const Param* p = m.find(name.substr(5));
    ASSERT_NE(p, nullptr) << name;
    ASSERT_EQ(p->shape, t.shape) << name;
    EXPECT_LT(rel_l2(p->g, f32(t)), 1e-4) << name;
  }
  EXPECT_EQ(n, expected_count);
  size_t trainable = 0;
  for (const Param* p : m.params()) trainable += p->trainable;
  EXPECT_EQ(trainable, n);
}

class HfGolden : public ::testing::TestWithParam<std::pair<const char*, size_t>> {};

TEST_P(HfGolden, LossAndEveryGradient) {
  const auto [fixture, n_grads] = GetParam();
  const TensorStore g = TensorStore::open(kData + "/training/" + fixture + std::string(".train.safetensors"));
  ThreadPool pool(2);
  GradRun r = run(fixture, golden_batch(g), Objective{}, pool);
  const double loss = r.st.main_sum / double(r.sc.main_targets);
  EXPECT_NEAR(loss, f32(g.get("loss"))[0], 1e-4 * std::abs(loss));
  expect_grads(*r.m, g, n_grads);
}

INSTANTIATE_TEST_SUITE_P(Families, HfGolden,
                         ::testing::Values(std::make_pair("tiny-deepseek-v3", size_t(137)),
                                           std::make_pair("tiny-deepseek-v2-lite", size_t(131)),
                                           std::make_pair("tiny-qwen2", size_t(27))),
                         [](const auto& info) {
                           std::string s = info.param.first;
                           for (char& c : s) if (c == '-') c = '_';
                           return s;
                         });

TEST(V3Objective, LossesGradientsLoadsAndBiasRule) {
  const TensorStore g = TensorStore::open(kData + "/training/tiny-deepseek-v3-mtp.train.safetensors");
  ThreadPool pool(2);
  const Objective obj = Objective::weights(0.3, 0.01);
  GradRun r = run("tiny-deepseek-v3-mtp", golden_batch(g), obj, pool);
  ASSERT_EQ(r.m->mtp_modules(), 1);
  const double main = r.st.main_sum / double(r.sc.main_targets);
  const double mtp = r.st.mtp_sum[0] / double(r.sc.mtp_targets[0]);
  const double bal = r.st.balance_sum / double(r.sc.sequences);
  EXPECT_NEAR(main, f32(g.get("loss_main"))[0], 1e-5 * main);
  EXPECT_NEAR(mtp, f32(g.get("loss_mtp"))[0], 1e-5 * mtp);
  EXPECT_NEAR(bal, f32(g.get("loss_balance"))[0], 1e-4 * bal);
  EXPECT_NEAR(main + 0.3 * mtp + bal, f32(g.get("loss"))[0], 1e-5 * main);
  expect_grads(*r.m, g, 202);
  // Loads and the bias rule, per MoE layer (main layers and the MTP block).
  r.m->update_biases(r.st.load, 0.001);
  size_t checked = 0;
  for (size_t i = 0; i < r.m->moe_layers().size(); ++i) {
    const Param* bias = r.m->moe_layers()[i].bias;
    ASSERT_NE(bias, nullptr);
    const std::vector<float> load = f32(g.get("load." + bias->name));
    for (size_t e = 0; e < load.size(); ++e) EXPECT_EQ(r.st.load[i][e], double(load[e])) << bias->name << " " << e;
    const std::vector<float> after = f32(g.get("bias_after_step." + bias->name));
    for (size_t e = 0; e < after.size(); ++e) EXPECT_NEAR(bias->w[e], after[e], 1e-7) << bias->name << " " << e;
    ++checked;
  }
  EXPECT_EQ(checked, 3u);
}

}  // namespace
}  // namespace fathom::train
