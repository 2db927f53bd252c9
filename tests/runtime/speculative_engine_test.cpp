// Speculative decoding inside continuous batching: drafting and plain sequences share steps,
// and each gets exactly the greedy tokens plain generation gives it alone.
#include <gtest/gtest.h>

#include <chrono>

#include "runtime/engine.h"
#include "runtime/generate.h"
#include "spec_fixture.h"

namespace fathom {
namespace {

std::vector<int32_t> drain(GenStream& s, FinishReason* reason) {
  std::vector<int32_t> out;
  GenEvent ev;
  while (s.next(ev, std::chrono::milliseconds(20000))) {
    if (ev.kind == GenEvent::Token) {
      out.push_back(ev.token);
      continue;
    }
    *reason = ev.reason;
    break;
  }
  return out;
}

TEST(SpeculativeEngine, BatchedMatchesPlainAlone) {
  for (const std::string& dir : {test::kMtpFixture, test::echo_model_dir()}) {
    LoadOpts lo;
    lo.threads = 1;
    auto model = load_model(dir, lo), ref = load_model(dir, lo);
    const int64_t V = model->config().vocab_size;
    EngineOpts eo;
    eo.max_batch = 4;  // 10 requests: some wait, and slots are reused with their prefix caches
    eo.max_ctx = 40;   // some requests run into the context
    eo.prefill_chunk = 5;
    eo.max_draft = 3;
    Engine engine(*model, eo);
    struct Sub {
      GenRequest req;
      std::shared_ptr<GenStream> st;
    };
    std::vector<Sub> subs;
    for (int i = 0; i < 10; ++i) {
      GenRequest r;
      for (int j = 0; j < 4 + (i * 5) % 17; ++j) r.prompt.push_back(int32_t((i * 7 + j * 3 + 2) % V));
      if (i % 5 == 4) r.prompt.assign(subs[size_t(i - 4)].req.prompt.begin(), subs[size_t(i - 4)].req.prompt.end());
      r.sampling.temperature = 0;
      r.max_tokens = i % 3 == 0 ? 100 : 9 + i;
      r.draft = i % 4 == 1 ? 0 : 1 + i % 3;  // some plain, the rest drafting 1..3
      if (i == 6) r.top_logprobs = 2;         // logprobs: no drafts
      if (i % 4 == 2) r.stop_ids = {int32_t((i * 5) % V)};
      subs.push_back({r, nullptr});
    }
    for (Sub& s : subs) s.st = engine.submit(s.req);
    for (Sub& s : subs) {
      FinishReason why = FinishReason::None;
      const auto got = drain(*s.st, &why);
      GenerateOpts g;
      g.sampling.temperature = 0;
      g.max_new_tokens = s.req.max_tokens;
      g.stop_ids = s.req.stop_ids;
      Session alone(*ref, eo.max_ctx);
      EXPECT_EQ(got, alone.generate(s.req.prompt, g)) << dir << " draft " << s.req.draft;
      EXPECT_TRUE(why == FinishReason::Stop || why == FinishReason::Length);
    }
    const EngineStats st = engine.stats();
    EXPECT_GT(st.spec.steps, 0);
    EXPECT_GT(st.spec.drafted, 0);
    if (dir == test::echo_model_dir()) {
      EXPECT_GT(st.spec.accepted, 0);
    }
  }
}

}  // namespace
}  // namespace fathom
