// DeepSeek's multi-token prediction module against the reference goldens (mtp_logits.N in a
// fixture's golden.safetensors), in both MLA modes, and incremental == full.
#include <gtest/gtest.h>

#include <filesystem>

#include "fixtures.h"
#include "model/model.h"

namespace fathom {
namespace {

std::vector<std::string> mtp_fixtures() {
  std::vector<std::string> out;
  for (const std::string& d : test::fixture_dirs())
    if (TensorStore::open(d + "/golden.safetensors").find("mtp_logits.0")) out.push_back(d);
  return out;
}

class MtpGolden : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    golden_ = std::make_unique<TensorStore>(TensorStore::open(GetParam() + "/golden.safetensors"));
    LoadOpts lo;
    lo.threads = 2;
    model_ = load_model(GetParam(), lo);
    ids_ = test::ids(golden_->get("input_ids.0"));
    T_ = int64_t(ids_.size());
    D_ = model_->config().hidden_size;
    V_ = model_->config().vocab_size;
  }
  // The main model's hidden states after the final norm, [T, D].
  std::vector<float> main_hidden(AttnMode mode) {
    KvCache cache = model_->make_cache(1, T_);
    std::vector<float> logits(static_cast<size_t>(V_)), hidden(size_t(T_ * D_));
    ForwardOpts fo;
    fo.attn = mode;
    fo.final_hidden = hidden.data();
    model_->forward({SeqChunk{0, 0, ids_.data(), T_, false}}, cache, logits.data(), fo);
    return hidden;
  }
  std::unique_ptr<TensorStore> golden_;
  std::unique_ptr<Model> model_;
  std::vector<int32_t> ids_;
  int64_t T_ = 0, D_ = 0, V_ = 0;
};

TEST_P(MtpGolden, LogitsMatchReference) {
  ASSERT_GE(model_->mtp_modules(), 1);
  const auto want = test::f32(golden_->get("mtp_logits.0"));
  const auto want_eh = test::f32(golden_->get("mtp_eh_proj.0"));
  const auto want_block = test::f32(golden_->get("mtp_block_out.0"));
  ASSERT_EQ(want.size(), size_t((T_ - 1) * V_));
  for (AttnMode m : {AttnMode::Absorbed, AttnMode::Naive}) {
    const char* mode = m == AttnMode::Naive ? "naive" : "absorbed";
    const auto hidden = main_hidden(m);
    if (golden_->find("main_hidden.0")) {
      const auto h = test::f32(golden_->get("main_hidden.0"));
      EXPECT_LT(test::max_abs_diff(hidden.data(), h.data(), h.size()), 1e-3f) << mode;
    }
    KvCache cache = model_->make_mtp_cache(1, T_);
    std::vector<float> logits(size_t((T_ - 1) * V_)), out(size_t((T_ - 1) * D_)), eh;
    TraceFn trace = [&](const std::string& name, const float* p, int64_t r, int64_t c) {
      if (name == "mtp.eh_proj") eh.assign(p, p + r * c);
    };
    ForwardOpts fo;
    fo.attn = m;
    fo.trace = &trace;
    model_->mtp_forward(0, {MtpChunk{0, 0, hidden.data(), ids_.data() + 1, T_ - 1, true}}, cache, logits.data(),
                        out.data(), fo);
    ASSERT_EQ(eh.size(), want_eh.size());
    EXPECT_LT(test::max_abs_diff(eh.data(), want_eh.data(), eh.size()), 1e-3f) << mode;
    EXPECT_LT(test::max_abs_diff(out.data(), want_block.data(), out.size()), 1e-3f) << mode;
    EXPECT_LT(test::max_abs_diff(logits.data(), want.data(), want.size()), 1e-3f) << mode;
  }
}

// Rows fed in uneven chunks (one at a time at the end, as decoding does) against the cache give
// the logits of one pass over all rows; two sequences in one batch do not see each other.
TEST_P(MtpGolden, IncrementalEqualsFull) {
  const auto want = test::f32(golden_->get("mtp_logits.0"));
  for (AttnMode m : {AttnMode::Absorbed, AttnMode::Naive}) {
    const auto hidden = main_hidden(m);
    ForwardOpts fo;
    fo.attn = m;
    KvCache cache = model_->make_mtp_cache(2, T_);
    std::vector<float> logits(size_t(2 * (T_ - 1) * V_));
    const int64_t rows = T_ - 1, cuts[] = {0, 7, 12, 13};
    int64_t done = 0;
    auto step = [&](int64_t n) {
      // Slot 1 gets the same rows one step behind, so the batch mixes positions.
      std::vector<MtpChunk> b = {{0, done, hidden.data() + done * D_, ids_.data() + 1 + done, n, true}};
      model_->mtp_forward(0, b, cache, logits.data() + done * V_, nullptr, fo);
      done += n;
    };
    for (size_t i = 1; i < std::size(cuts); ++i) step(cuts[i] - cuts[i - 1]);
    while (done < rows) step(1);
    EXPECT_LT(test::max_abs_diff(logits.data(), want.data(), want.size()), 1e-3f);
    // Both slots in one batch: slot 1 over all rows, slot 0 (already full) re-reading its last row.
    std::vector<float> two(size_t((rows + 1) * V_));
    model_->mtp_forward(0,
                        {{0, rows - 1, hidden.data() + (rows - 1) * D_, ids_.data() + rows, 1, true},
                         {1, 0, hidden.data(), ids_.data() + 1, rows, true}},
                        cache, two.data(), nullptr, fo);
    EXPECT_LT(test::max_abs_diff(two.data(), want.data() + (rows - 1) * V_, size_t(V_)), 1e-3f);
    EXPECT_LT(test::max_abs_diff(two.data() + V_, want.data(), want.size()), 1e-3f);
  }
}

std::string fixture_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string n = std::filesystem::path(info.param).filename().string();
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MtpGolden, ::testing::ValuesIn(mtp_fixtures()), fixture_name);

}  // namespace
}  // namespace fathom
