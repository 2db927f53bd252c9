// generate_groups against one-sequence generate(): the same greedy ids and, with the documented
// per-completion seeds, the same samples (so the prompt KV a leader copies into its group's slots
// is exact), with slots fewer than completions so groups are admitted as slots free up. Also
// Scheduler::share_prefix's choice of slots on its own.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "core/random.h"
#include "runtime/batch_generate.h"
#include "runtime/generate.h"
#include "runtime/scheduler.h"
#include "spec_fixture.h"

namespace fathom {
namespace {

using Ids = std::vector<int32_t>;

// Different lengths; p1 is a prefix of p0, p3 extends p0, p4 repeats p1, p2 has one token.
const std::vector<Ids> kPrompts = {
    {3, 4, 5, 6, 7}, {3, 4, 5}, {9}, {3, 4, 5, 6, 7, 8, 2, 10}, {3, 4, 5}, {11, 2, 7, 7, 1, 0}, {6, 6, 2, 9}};

struct Shape {
  int64_t group, max_slots, prefill_chunk;
};
// Every one has fewer slots than completions (1 slot is raised to the group); a small chunk makes
// leaders finish at different steps and prompts be read while other sequences decode.
const std::vector<Shape> kShapes = {{1, 3, 256}, {3, 1, 256}, {3, 4, 256}, {3, 7, 256}, {3, 7, 2}, {2, 5, 3}, {4, 9, 1}};

std::string describe(const Shape& s) {
  return "group " + std::to_string(s.group) + ", slots " + std::to_string(s.max_slots) + ", chunk " +
         std::to_string(s.prefill_chunk);
}

std::unique_ptr<Model> load_fixture(const std::string& name) {
  LoadOpts lo;
  lo.threads = 1;
  return load_model(std::string(FATHOM_TEST_DATA) + "/fixtures/" + name, lo);
}

Ids alone(Model& m, const Ids& prompt, int64_t max_new, float temperature, uint64_t seed) {
  GenerateOpts o;
  o.max_new_tokens = max_new;
  o.sampling.temperature = temperature;
  o.sampling.seed = seed;
  return generate(m, prompt, o);
}

void expect_greedy_matches(Model& m, int64_t max_new) {
  std::vector<Ids> want;
  for (const Ids& p : kPrompts) want.push_back(alone(m, p, max_new, 0.0f, 0));
  for (const Shape& s : kShapes) {
    BatchGenOpts o;
    o.group = s.group;
    o.max_slots = s.max_slots;
    o.prefill_chunk = s.prefill_chunk;
    o.max_new_tokens = max_new;
    o.sampling.temperature = 0;
    BatchGenStats st;
    const auto out = generate_groups(m, kPrompts, o, &st);
    ASSERT_EQ(out.size(), kPrompts.size()) << describe(s);
    int64_t generated = 0, prompt_tokens = 0;
    for (size_t i = 0; i < kPrompts.size(); ++i) {
      prompt_tokens += int64_t(kPrompts[i].size());
      ASSERT_EQ(out[i].size(), size_t(s.group)) << describe(s);
      for (size_t j = 0; j < out[i].size(); ++j) {
        EXPECT_EQ(out[i][j].ids, want[i]) << describe(s) << ", prompt " << i << ", completion " << j;
        EXPECT_FALSE(out[i][j].stopped) << describe(s);
        generated += int64_t(out[i][j].ids.size());
      }
    }
    EXPECT_EQ(st.prompt_tokens, prompt_tokens) << describe(s);  // each prompt once, not once per completion
    EXPECT_EQ(st.generated, generated) << describe(s);
    EXPECT_EQ(generated, int64_t(kPrompts.size()) * s.group * max_new) << describe(s);
    EXPECT_GT(st.steps, 0) << describe(s);
  }
}

TEST(BatchGenerate, GreedyIsGenerateOnEachPromptAlone) {
  auto m = test::load_small();
  expect_greedy_matches(*m, 6);
}

// A model whose cache holds keys and values per head (GQA) rather than MLA's latent.
TEST(BatchGenerate, GreedyIsGenerateOnEachPromptAloneQwen2) {
  auto m = load_fixture("tiny-qwen2");
  expect_greedy_matches(*m, 5);
}

void expect_samples_match(Model& m, int64_t max_new) {
  const uint64_t seed = 1234;
  for (const Shape& s : kShapes) {
    BatchGenOpts o;
    o.group = s.group;
    o.max_slots = s.max_slots;
    o.prefill_chunk = s.prefill_chunk;
    o.max_new_tokens = max_new;
    o.sampling.temperature = 1.0f;
    o.sampling.seed = seed;
    const auto out = generate_groups(m, kPrompts, o);
    ASSERT_EQ(out.size(), kPrompts.size());
    std::vector<Ids> distinct;  // completions differ from each other: the seeds are really per completion
    for (size_t i = 0; i < kPrompts.size(); ++i)
      for (int64_t j = 0; j < s.group; ++j) {
        const uint64_t sj = splitmix64(seed ^ splitmix64(uint64_t(int64_t(i) * s.group + j)));
        const Ids want = alone(m, kPrompts[i], max_new, 1.0f, sj);
        EXPECT_EQ(out[i][size_t(j)].ids, want) << describe(s) << ", prompt " << i << ", completion " << j;
        if (std::find(distinct.begin(), distinct.end(), want) == distinct.end()) distinct.push_back(want);
      }
    if (s.group > 1) {
      EXPECT_GT(distinct.size(), kPrompts.size()) << describe(s);
    }
  }
}

TEST(BatchGenerate, SamplesAreGenerateWithTheDocumentedSeeds) {
  auto m = test::load_small();
  expect_samples_match(*m, 8);
}

TEST(BatchGenerate, SamplesAreGenerateWithTheDocumentedSeedsQwen2) {
  auto m = load_fixture("tiny-qwen2");
  expect_samples_match(*m, 6);
}

// A stop id ends the completions that emit it (the id included); max_new_tokens ends the rest.
TEST(BatchGenerate, StopIdsEndCompletions) {
  auto m = test::load_small();
  const int64_t max_new = 10;
  const uint64_t seed = 99;
  const int64_t G = 3;
  std::vector<std::vector<Ids>> full(kPrompts.size());
  for (size_t i = 0; i < kPrompts.size(); ++i)
    for (int64_t j = 0; j < G; ++j)
      full[i].push_back(alone(*m, kPrompts[i], max_new, 1.0f, splitmix64(seed ^ splitmix64(uint64_t(int64_t(i) * G + j)))));
  // A stop id that some completions emit and some do not.
  int32_t stop = -1;
  for (int32_t t = 0; t < int32_t(test::kSmallVocab) && stop < 0; ++t) {
    int64_t with = 0, total = 0;
    for (const auto& g : full)
      for (const Ids& c : g) {
        with += std::find(c.begin(), c.end(), t) != c.end();
        ++total;
      }
    if (with >= 3 && with <= total - 3) stop = t;
  }
  ASSERT_GE(stop, 0) << "no token is emitted by some completions and not by others";

  BatchGenOpts o;
  o.group = G;
  o.max_slots = 5;
  o.prefill_chunk = 2;
  o.max_new_tokens = max_new;
  o.sampling.temperature = 1.0f;
  o.sampling.seed = seed;
  o.stop_ids = {stop};
  BatchGenStats st;
  const auto out = generate_groups(*m, kPrompts, o, &st);
  int64_t generated = 0, stopped = 0;
  for (size_t i = 0; i < kPrompts.size(); ++i)
    for (size_t j = 0; j < size_t(G); ++j) {
      const Ids& f = full[i][j];
      const auto at = std::find(f.begin(), f.end(), stop);
      const Ids want(f.begin(), at == f.end() ? f.end() : at + 1);
      EXPECT_EQ(out[i][j].ids, want) << "prompt " << i << ", completion " << j;
      EXPECT_EQ(out[i][j].stopped, at != f.end()) << "prompt " << i << ", completion " << j;
      if (at == f.end()) {
        EXPECT_EQ(int64_t(out[i][j].ids.size()), max_new);
      }
      generated += int64_t(out[i][j].ids.size());
      stopped += out[i][j].stopped;
    }
  EXPECT_GT(stopped, 0);
  EXPECT_EQ(st.generated, generated);
  EXPECT_LT(generated, int64_t(kPrompts.size()) * G * max_new);
}

TEST(BatchGenerate, BadPromptsThrowPromptError) {
  auto m = test::load_small();
  BatchGenOpts o;
  o.group = 2;
  o.max_new_tokens = 4;
  auto kind_of = [&](const std::vector<Ids>& prompts, const BatchGenOpts& opts) {
    try {
      generate_groups(*m, prompts, opts);
    } catch (const PromptError& e) {
      return int(e.kind);
    }
    return -1;
  };
  EXPECT_EQ(kind_of({{1, 2}, {3, int32_t(test::kSmallVocab)}}, o), int(PromptError::BadToken));
  EXPECT_EQ(kind_of({{1, 2}, {3, -1}}, o), int(PromptError::BadToken));
  EXPECT_EQ(kind_of({{1, 2}, {}}, o), int(PromptError::Empty));
  // The context holds the longest prompt and max_new_tokens: with none, no prompt fits.
  BatchGenOpts none = o;
  none.max_new_tokens = 0;
  EXPECT_EQ(kind_of({{1, 2}}, none), int(PromptError::TooLong));

  BatchGenStats st;
  st.prompt_tokens = st.generated = st.steps = 7;
  EXPECT_TRUE(generate_groups(*m, {}, o, &st).empty());
  EXPECT_EQ(st.prompt_tokens, 0);
  EXPECT_EQ(st.generated, 0);
  EXPECT_EQ(st.steps, 0);
}

// The model stays usable after a bad call, and a good call after it gives the usual result.
TEST(BatchGenerate, WorksAfterAFailedCall) {
  auto m = test::load_small();
  BatchGenOpts o;
  o.group = 2;
  o.max_new_tokens = 3;
  o.sampling.temperature = 0;
  EXPECT_THROW(generate_groups(*m, {{1, 2}, {40}}, o), PromptError);
  const auto out = generate_groups(*m, {{1, 2}}, o);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0][0].ids, alone(*m, {1, 2}, 3, 0.0f, 0));
  EXPECT_EQ(out[0][1].ids, out[0][0].ids);
}

// share_prefix: the least recently used free slots, never `src`, never one in `keep`, never a
// busy one; the chosen slots then hold src's tokens, which the next admissions reuse.
TEST(SchedulerSharePrefix, PicksLeastRecentlyUsedFreeSlots) {
  const int64_t vocab = 16, ctx = 32;
  Scheduler sched(6, ctx);
  auto seq = [&](Ids prompt) {
    GenRequest r;
    r.prompt = std::move(prompt);
    r.max_tokens = 4;
    return std::make_unique<Sequence>(std::move(r), vocab, ctx);
  };
  // Slots are taken in order while all are empty.
  auto a = seq({1, 2, 3}), b = seq({4, 5}), c = seq({6, 7, 8, 9}), d = seq({1, 1});
  for (Sequence* s : {a.get(), b.get(), c.get(), d.get()}) sched.admit(*s);
  ASSERT_EQ(a->slot, 0);
  ASSERT_EQ(b->slot, 1);
  ASSERT_EQ(c->slot, 2);
  ASSERT_EQ(d->slot, 3);
  for (Sequence* s : {a.get(), b.get(), c.get(), d.get()}) s->pos = s->n_prompt;  // as if read
  // Finished in the order c, a, d: free slots 2 (oldest), 0, 3 and the untouched 4 and 5; b keeps slot 1.
  sched.finish(*c, FinishReason::Length);
  sched.finish(*a, FinishReason::Length);
  sched.finish(*d, FinishReason::Length);
  EXPECT_EQ(sched.cached_tokens(0), 3);
  EXPECT_EQ(sched.cached_tokens(2), 4);

  EXPECT_THROW(sched.share_prefix(1, 1), Error);  // busy
  EXPECT_THROW(sched.share_prefix(6, 1), Error);  // no such slot
  EXPECT_THROW(sched.share_prefix(-1, 1), Error);

  // Never-used slots 4 and 5 are the least recently used; then 2, but it is kept; then 3.
  const std::vector<int64_t> got = sched.share_prefix(0, 3, {2});
  EXPECT_EQ(got, (std::vector<int64_t>{4, 5, 3}));
  for (int64_t s : got) EXPECT_EQ(sched.cached_tokens(s), 3) << s;
  EXPECT_EQ(sched.cached_tokens(2), 4);  // kept as it was
  EXPECT_EQ(sched.cached_tokens(1), 0);  // busy: untouched (its tokens are set when it finishes)
  EXPECT_EQ(sched.free_slots(), 5);

  // The next admissions with that prompt find it in slot 0 and its three copies, each in its own slot.
  std::vector<std::unique_ptr<Sequence>> group;
  std::vector<int64_t> slots;
  for (int k = 0; k < 4; ++k) {
    group.push_back(seq({1, 2, 3}));
    sched.admit(*group.back());
    slots.push_back(group.back()->slot);
    EXPECT_EQ(group.back()->cached, 2) << k;  // the last prompt token is always recomputed
  }
  std::sort(slots.begin(), slots.end());
  EXPECT_EQ(slots, (std::vector<int64_t>{0, 3, 4, 5}));
  // b finishes; its tokens were not overwritten by the sharing.
  sched.finish(*b, FinishReason::Length);
  EXPECT_EQ(sched.cached_tokens(1), 2);
  auto b2 = seq({4, 5, 6});
  sched.admit(*b2);
  EXPECT_EQ(b2->slot, 1);
  EXPECT_EQ(b2->cached, 2);

  // Asking for more than there are gives every free slot but src; none when src is the only one.
  for (auto& s : group) sched.finish(*s, FinishReason::Length);
  sched.finish(*b2, FinishReason::Length);
  auto all = sched.share_prefix(1, 10);
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (std::vector<int64_t>{0, 2, 3, 4, 5}));
  EXPECT_TRUE(sched.share_prefix(1, 0).empty());
}

}  // namespace
}  // namespace fathom
