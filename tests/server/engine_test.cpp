// The continuous-batching engine on the tiny DeepSeek-V3 fixture: sequences that share the
// batch get exactly the tokens they get alone, the prefix cache reuses KV without changing
// the result, and cancelled or queued requests behave.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "runtime/engine.h"
#include "runtime/generate.h"

using namespace fathom;

namespace {

LoadOpts with_threads(int n) {
  LoadOpts o;
  o.threads = n;
  return o;
}

const std::string kModel = std::string(FATHOM_TEST_DATA) + "/fixtures/tiny-deepseek-v3";

struct Result {
  std::vector<int32_t> tokens;
  FinishReason reason = FinishReason::None;
  int64_t cached = 0;
};

Result drain(GenStream& s) {
  Result r;
  GenEvent ev;
  for (int i = 0; i < 100000; ++i) {
    if (!s.next(ev, std::chrono::milliseconds(10000))) break;
    if (ev.kind == GenEvent::Token) r.tokens.push_back(ev.token);
    else {
      r.reason = ev.reason;
      break;
    }
  }
  r.cached = s.cached_tokens();
  return r;
}

std::vector<int32_t> prompt_of(int i, int len) {
  std::vector<int32_t> p;
  for (int j = 0; j < len; ++j) p.push_back(int32_t((i * 131 + j * 17 + 3) % 1000));
  return p;
}

}  // namespace

// Model::forward is not reentrant: references come from a second instance of the model while
// the engine owns the first.
TEST(Engine, BatchedRequestsMatchGenerateAlone) {
  auto model = load_model(kModel, with_threads(2));
  auto ref = load_model(kModel, with_threads(1));
  EngineOpts eo;
  eo.max_batch = 4;  // 10 requests: some wait in the queue
  eo.max_ctx = 128;
  eo.prefill_chunk = 7;  // prompts are read in several chunks, mixed with decodes
  Engine engine(*model, eo);
  std::vector<std::shared_ptr<GenStream>> streams;
  for (int i = 0; i < 10; ++i) {
    GenRequest r;
    r.prompt = prompt_of(i, 5 + 3 * i);
    r.sampling.temperature = 0;
    r.max_tokens = 6 + i;
    streams.push_back(engine.submit(r));
  }
  for (int i = 0; i < 10; ++i) {
    Result got = drain(*streams[size_t(i)]);
    GenerateOpts g;
    g.max_new_tokens = 6 + i;
    g.sampling.temperature = 0;
    EXPECT_EQ(got.tokens, generate(*ref, prompt_of(i, 5 + 3 * i), g)) << "request " << i;
    EXPECT_EQ(got.reason, FinishReason::Length);
  }
  EXPECT_EQ(engine.stats().completion_tokens, 6 * 10 + 45);
}

TEST(Engine, PrefixCacheReusesKvWithoutChangingTheResult) {
  auto model = load_model(kModel, with_threads(2));
  auto ref = load_model(kModel, with_threads(1));
  EngineOpts eo;
  eo.max_batch = 2;
  eo.max_ctx = 64;
  Engine engine(*model, eo);
  GenRequest r;
  r.prompt = prompt_of(1, 20);
  r.sampling.temperature = 0;
  r.max_tokens = 5;
  Result a = drain(*engine.submit(r));
  EXPECT_EQ(a.cached, 0);
  // The same prompt again: all but the last prompt token come from the cache.
  Result b = drain(*engine.submit(r));
  EXPECT_EQ(b.cached, 19);
  EXPECT_EQ(a.tokens, b.tokens);
  // A continuation of the first conversation shares the prompt and the completion but its last.
  GenRequest c = r;
  c.prompt.insert(c.prompt.end(), a.tokens.begin(), a.tokens.end());
  c.prompt.push_back(7);
  Result got = drain(*engine.submit(c));
  EXPECT_EQ(got.cached, 20 + 4);
  GenerateOpts g;
  g.max_new_tokens = 5;
  g.sampling.temperature = 0;
  EXPECT_EQ(got.tokens, generate(*ref, c.prompt, g));
}

TEST(Engine, CancelFreesTheSlotAndStopIdsFinish) {
  auto model = load_model(kModel, with_threads(2));
  auto ref = load_model(kModel, with_threads(1));
  EngineOpts eo;
  eo.max_batch = 1;
  eo.max_ctx = 512;
  eo.max_queue = 1;
  Engine engine(*model, eo);
  GenRequest longr;
  longr.prompt = prompt_of(2, 8);
  longr.sampling.temperature = 0;
  longr.max_tokens = 400;
  auto s1 = engine.submit(longr);
  GenEvent ev;
  ASSERT_TRUE(s1->next(ev, std::chrono::milliseconds(10000)));
  auto s2 = engine.submit(longr);  // waits: the only slot is busy
  EXPECT_THROW(engine.submit(longr), QueueFull);
  s1->cancel();
  Result r1 = drain(*s1);
  EXPECT_EQ(r1.reason, FinishReason::Cancelled);
  // The queued request gets the slot; it stops at its first token when that is a stop id.
  GenerateOpts g;
  g.max_new_tokens = 3;
  g.sampling.temperature = 0;
  const auto expect = generate(*ref, longr.prompt, g);
  s2->cancel();
  drain(*s2);
  GenRequest stop = longr;
  stop.stop_ids = {expect[1]};
  Result r3 = drain(*engine.submit(stop));
  EXPECT_EQ(r3.reason, FinishReason::Stop);
  const auto first = std::find(expect.begin(), expect.end(), expect[1]);
  EXPECT_EQ(r3.tokens, std::vector<int32_t>(expect.begin(), first + 1));
}

TEST(Engine, RejectsPromptsThatDoNotFit) {
  auto model = load_model(kModel, with_threads(1));
  EngineOpts eo;
  eo.max_batch = 1;
  eo.max_ctx = 16;
  Engine engine(*model, eo);
  GenRequest r;
  r.prompt = prompt_of(0, 16);
  EXPECT_THROW(engine.submit(r), Error);
  r.prompt = {};
  EXPECT_THROW(engine.submit(r), Error);
  r.prompt = {5000};
  EXPECT_THROW(engine.submit(r), Error);
  // The context caps max_tokens: 15 prompt tokens leave 1.
  r.prompt = prompt_of(0, 15);
  r.max_tokens = 100;
  r.sampling.temperature = 0;
  Result got = drain(*engine.submit(r));
  EXPECT_EQ(got.tokens.size(), 1u);
  EXPECT_EQ(got.reason, FinishReason::Length);
}
