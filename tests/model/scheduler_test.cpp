// The shared generation step: the scheduler's slot choice and chunking (no model needed),
// and a Session driven by it on the tiny DeepSeek-V3 fixture.
#include <gtest/gtest.h>

#include <algorithm>

#include "runtime/generate.h"
#include "runtime/scheduler.h"

using namespace fathom;

namespace {

LoadOpts with_threads(int n) {
  LoadOpts o;
  o.threads = n;
  return o;
}

constexpr int64_t kVocab = 100;

Sequence seq_of(std::vector<int32_t> prompt, int64_t max_tokens = 4) {
  GenRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  return Sequence(std::move(r), kVocab, 64);
}

// Pretends the sequence's prompt was read and ends it, so its slot caches the prompt.
void read_and_finish(Scheduler& sc, Sequence& s) {
  s.pos = s.n_prompt;
  sc.finish(s, FinishReason::Length);
}

}  // namespace

TEST(Scheduler, TakesTheFreeSlotSharingTheLongestPrefixLeastRecentlyUsedAmongEquals) {
  Scheduler sc(3, 64);
  Sequence a = seq_of({1, 2, 3, 4}), b = seq_of({1, 2, 9, 9}), c = seq_of({7, 7});
  sc.admit(a);
  sc.admit(b);
  sc.admit(c);
  EXPECT_FALSE(sc.can_admit());
  EXPECT_EQ(a.slot, 0);
  EXPECT_EQ(a.pos, 0);
  read_and_finish(sc, a);  // slot 0: 1 2 3 4
  read_and_finish(sc, b);  // slot 1: 1 2 9 9
  read_and_finish(sc, c);  // slot 2: 7 7
  EXPECT_TRUE(sc.running().empty());

  Sequence d = seq_of({1, 2, 3, 5, 6});
  sc.admit(d);
  EXPECT_EQ(d.slot, 0);
  EXPECT_EQ(d.cached, 3);
  EXPECT_EQ(d.pos, 3);
  // Nothing shared anywhere: the least recently used free slot (1, freed before 2).
  Sequence e = seq_of({50, 51});
  sc.admit(e);
  EXPECT_EQ(e.slot, 1);
  EXPECT_EQ(e.cached, 0);
  // The whole prompt cached: the last token is still computed, for its logits.
  read_and_finish(sc, d);
  Sequence f = seq_of({1, 2, 3, 5, 6});
  sc.admit(f);
  EXPECT_EQ(f.slot, 0);
  EXPECT_EQ(f.cached, 4);
}

TEST(Scheduler, ChunksPromptsWithinTheSequenceChunkAndTheStepBudget) {
  Scheduler sc(3, 64);
  std::vector<int32_t> long_prompt(20, 5);
  Sequence dec = seq_of({1, 2}), p1 = seq_of(long_prompt), p2 = seq_of(long_prompt);
  sc.admit(dec);
  dec.pos = 2;  // prompt read: decodes from here
  sc.admit(p1);
  sc.admit(p2);
  StepOpts o;
  o.prefill_chunk = 8;
  o.prefill_budget = 12;
  std::vector<SeqChunk> batch;
  std::vector<Sequence*> seqs;
  sc.schedule(o, batch, seqs);
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].n, 1);  // a decode is never held back by the budget
  EXPECT_EQ(batch[0].pos, 2);
  EXPECT_EQ(batch[1].n, 8);  // the per-sequence chunk
  EXPECT_EQ(batch[2].n, 4);  // what the step's budget leaves
  EXPECT_EQ(seqs[2], &p2);
  o.prefill_budget = 8;
  sc.schedule(o, batch, seqs);
  ASSERT_EQ(batch.size(), 2u);  // p2 waits for budget
  EXPECT_EQ(seqs[1], &p1);
}

TEST(Validate, PromptChecks) {
  EXPECT_THROW(validate_prompt({}, kVocab, 8), PromptError);
  try {
    validate_prompt(std::vector<int32_t>(8, 1), kVocab, 8);
    FAIL();
  } catch (const PromptError& e) {
    EXPECT_EQ(e.kind, PromptError::TooLong);
    EXPECT_NE(std::string(e.what()).find("8 tokens"), std::string::npos);
  }
  EXPECT_THROW(validate_prompt({1, int32_t(kVocab)}, kVocab, 8), PromptError);
  EXPECT_NO_THROW(validate_prompt({1, int32_t(kVocab - 1)}, kVocab, 8));
}

TEST(Session, ChunksEarlyStopsAndReuse) {
  auto model = load_model(std::string(FATHOM_TEST_DATA) + "/fixtures/tiny-deepseek-v3", with_threads(1));
  std::vector<int32_t> prompt;
  for (int i = 0; i < 11; ++i) prompt.push_back(int32_t(3 + 17 * i));
  GenerateOpts g;
  g.max_new_tokens = 6;
  g.sampling.temperature = 0;
  const auto want = generate(*model, prompt, g);
  ASSERT_EQ(want.size(), 6u);

  Session s(*model, 64);
  g.prefill_chunk = 3;  // the prompt in four forwards
  EXPECT_EQ(s.generate(prompt, g), want);
  EXPECT_EQ(s.reused_tokens(), 0);
  // The same prompt again, stopped after two tokens by the caller.
  int seen = 0;
  EXPECT_EQ(s.generate(prompt, g, [&](int32_t) { return ++seen < 2; }),
            std::vector<int32_t>(want.begin(), want.begin() + 2));
  EXPECT_EQ(s.reused_tokens(), 10);
  // The conversation goes on from what was kept: prompt + the first token.
  std::vector<int32_t> more = prompt;
  more.push_back(want[0]);
  more.push_back(want[1]);
  g.max_new_tokens = 4;
  EXPECT_EQ(s.generate(more, g), std::vector<int32_t>(want.begin() + 2, want.end()));
  EXPECT_EQ(s.reused_tokens(), 12);
  // A stop id ends generation after it is emitted; 0 new tokens only reads the prompt.
  g.stop_ids = {want[1]};
  const auto first = std::find(want.begin(), want.end(), want[1]);
  EXPECT_EQ(s.generate(prompt, g), std::vector<int32_t>(want.begin(), first + 1));
  g.max_new_tokens = 0;
  EXPECT_TRUE(s.generate(prompt, g).empty());
}
