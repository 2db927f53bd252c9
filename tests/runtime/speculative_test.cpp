// Speculative decoding with the MTP module: greedy output is exactly plain greedy output (any
// draft length, both MLA modes, at the context limit, with stop ids, across turns), and the
// caches after rollback hold what plain decoding leaves there.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "runtime/generate.h"
#include "runtime/runner.h"
#include "spec_fixture.h"

namespace fathom {
namespace {

std::vector<int32_t> prompt_of(int i, int len, int64_t vocab) {
  std::vector<int32_t> p;
  for (int j = 0; j < len; ++j) p.push_back(int32_t((i * 131 + j * 17 + 3) % vocab));
  return p;
}

struct Case {
  std::string name;
  std::unique_ptr<Model> model;
};

std::vector<Case> models() {
  std::vector<Case> out;
  LoadOpts lo;
  lo.threads = 1;
  out.push_back({"tiny-deepseek-v3-mtp", load_model(test::kMtpFixture, lo)});
  out.push_back({"random-v12", test::load_small()});
  out.push_back({"echo", test::load_echo()});
  return out;
}

TEST(Speculative, GreedyEqualsPlainGreedy) {
  for (Case& c : models()) {
    Model& m = *c.model;
    ASSERT_EQ(m.mtp_modules(), 1);
    const int64_t V = m.config().vocab_size;
    SpecStats total;
    for (AttnMode attn : {AttnMode::Absorbed, AttnMode::Naive})
      for (int i = 0; i < 3; ++i) {
        GenerateOpts g;
        g.sampling.temperature = 0;
        g.max_new_tokens = 40;
        g.attn = attn;
        g.prefill_chunk = 5;  // MTP reads the prompt chunk by chunk too
        const auto prompt = prompt_of(i, 3 + 7 * i, V);
        const auto plain = generate(m, prompt, g);
        for (int64_t k : {1, 2, 3, 5}) {
          g.draft = k;
          Session s(m, int64_t(prompt.size()) + g.max_new_tokens);
          EXPECT_EQ(s.generate(prompt, g), plain) << c.name << " prompt " << i << " draft " << k;
          total.drafted += s.spec_stats().drafted;
          total.accepted += s.spec_stats().accepted;
          total.steps += s.spec_stats().steps;
        }
        g.draft = 0;
      }
    // Both paths ran: some drafts were accepted, some rejected (random weights reject nearly all).
    if (c.name == "echo") {
      EXPECT_GT(total.accepted, total.drafted / 4) << c.name;
    }
    EXPECT_LT(total.accepted, total.drafted) << c.name;
    std::printf("%s: acceptance %.3f, %.2f tokens per verifying step\n", c.name.c_str(), total.acceptance(),
                total.tokens_per_step());
  }
}

// Context limit: drafting shortens near the end and the last tokens match; stop ids end the
// output at the same token even when it was accepted in the middle of a draft.
TEST(Speculative, ContextLimitAndStopIds) {
  for (Case& c : models()) {
    Model& m = *c.model;
    const int64_t V = m.config().vocab_size;
    const auto prompt = prompt_of(4, 6, V);
    for (int64_t ctx : {int64_t(8), int64_t(9), int64_t(23)}) {
      GenerateOpts g;
      g.sampling.temperature = 0;
      g.max_new_tokens = 100;  // clipped by the context
      Session plain_s(m, ctx);
      const auto plain = plain_s.generate(prompt, g);
      EXPECT_EQ(int64_t(plain.size()), ctx - int64_t(prompt.size()));
      for (int64_t k : {1, 3, 4}) {
        g.draft = k;
        Session s(m, ctx);
        EXPECT_EQ(s.generate(prompt, g), plain) << c.name << " ctx " << ctx << " draft " << k;
      }
      g.draft = 0;
    }
    GenerateOpts g;
    g.sampling.temperature = 0;
    g.max_new_tokens = 30;
    const auto full = generate(m, prompt, g);
    for (size_t at : {size_t(0), size_t(3), size_t(10)}) {
      g.stop_ids = {full[at]};
      g.draft = 0;
      const auto plain = generate(m, prompt, g);
      ASSERT_LE(plain.size(), at + 1);
      EXPECT_EQ(plain.back(), full[at]);
      for (int64_t k : {1, 2, 4}) {
        g.draft = k;
        EXPECT_EQ(generate(m, prompt, g), plain) << c.name << " stop " << full[at] << " draft " << k;
      }
    }
  }
}

// A session keeps both caches between turns; the second turn reuses what they hold.
TEST(Speculative, TurnsReuseTheCaches) {
  auto m = test::load_echo();
  const auto p1 = prompt_of(1, 9, test::kSmallVocab);
  GenerateOpts g;
  g.sampling.temperature = 0;
  g.max_new_tokens = 12;
  Session plain(*m, 128), spec(*m, 128);
  auto a1 = plain.generate(p1, g);
  g.draft = 3;
  auto b1 = spec.generate(p1, g);
  ASSERT_EQ(a1, b1);
  auto p2 = p1;
  p2.insert(p2.end(), a1.begin(), a1.end());
  for (int32_t t : {2, 5, 7}) p2.push_back(t);
  g.draft = 0;
  const auto a2 = plain.generate(p2, g);
  g.draft = 3;
  const auto b2 = spec.generate(p2, g);
  EXPECT_EQ(a2, b2);
  EXPECT_GT(spec.reused_tokens(), int64_t(p1.size()));
}

float test_max_abs(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

std::vector<float> cache_rows(const Model& m, const KvCache& c, int64_t layer, int64_t n) {
  std::vector<float> out(size_t(n * c.width()));
  m.backend().read(out.data(), c.at(layer, 0, 0), out.size());
  return out;
}

// After speculative decoding (rejections included), the main cache holds for the sequence's
// positions what one plain forward over its tokens writes, and the MTP cache what one MTP
// forward over them writes.
TEST(Speculative, CachesAfterRollbackEqualPlain) {
  for (Case& c : models()) {
    if (c.name != "echo") continue;  // it accepts and rejects
    Model& m = *c.model;
    const int64_t V = m.config().vocab_size, D = m.config().hidden_size, L = m.config().num_hidden_layers;
    const int64_t ctx = 64;
    Runner r(m, 1, ctx);
    ASSERT_TRUE(r.enable_speculation(3));
    GenRequest req;
    req.prompt = prompt_of(2, 11, V);
    req.sampling.temperature = 0;
    req.max_tokens = 30;
    req.draft = 3;
    Sequence s(req, V, ctx);
    r.scheduler().admit(s);
    StepOpts so;
    so.prefill_chunk = 4;
    while (s.running()) r.step(so);
    ASSERT_GT(r.spec_stats().drafted, r.spec_stats().accepted) << "no rejection to roll back";
    ASSERT_GT(r.spec_stats().accepted, 0);
    ASSERT_GT(s.mtp_pos, s.n_prompt);

    // The reference: plain forwards over the tokens.
    const int64_t T = s.pos;
    KvCache ref = m.make_cache(1, ctx);
    std::vector<float> logits(size_t(T * V)), hidden(size_t(T * D));
    ForwardOpts fo;
    fo.final_hidden = hidden.data();
    m.forward({SeqChunk{0, 0, s.tokens.data(), T, true}}, ref, logits.data(), fo);
    for (int64_t l = 0; l < L; ++l) {
      const auto a = cache_rows(m, r.cache(), l, T), b = cache_rows(m, ref, l, T);
      EXPECT_LT(test_max_abs(a, b), 1e-4f) << c.name << " layer " << l;
    }
    KvCache mref = m.make_mtp_cache(1, ctx);
    std::vector<float> mlog(static_cast<size_t>(V));
    m.mtp_forward(0, {MtpChunk{0, 0, hidden.data(), s.tokens.data() + 1, T, false}}, mref, mlog.data(), nullptr, {});
    const auto a = cache_rows(m, *r.mtp_cache(), 0, s.mtp_pos), b = cache_rows(m, mref, 0, s.mtp_pos);
    EXPECT_LT(test_max_abs(a, b), 1e-4f) << c.name << " mtp";
  }
}

}  // namespace
}  // namespace fathom
