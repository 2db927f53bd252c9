#include "runtime/batch_generate.h"

#include <algorithm>
#include <chrono>
#include <deque>
#include <memory>

#include "core/error.h"
#include "core/random.h"
#include "runtime/runner.h"
#include "runtime/sequence.h"

namespace fathom {

namespace {

struct Member : Sequence {
  Member(GenRequest r, int64_t vocab, int64_t ctx, int64_t p, int64_t g)
      : Sequence(std::move(r), vocab, ctx), prompt(p), index(g) {}
  int64_t prompt, index;  // which prompt, which completion of its group (-1: the prefill leader)
  int64_t home = -1;      // the slot it was admitted to
};

}  // namespace

std::vector<std::vector<Completion>> generate_groups(Model& model, const std::vector<std::vector<int32_t>>& prompts,
                                                     const BatchGenOpts& opts, BatchGenStats* stats) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t G = std::max<int64_t>(1, opts.group), vocab = model.config().vocab_size;
  int64_t longest = 0;
  for (const auto& p : prompts) longest = std::max<int64_t>(longest, int64_t(p.size()));
  const int64_t ctx = longest + std::max<int64_t>(0, opts.max_new_tokens);
  for (const auto& p : prompts) validate_prompt(p, vocab, ctx);
  std::vector<std::vector<Completion>> out(prompts.size(), std::vector<Completion>(size_t(G)));
  BatchGenStats st;
  if (prompts.empty()) {
    if (stats) *stats = st;
    return out;
  }

  const int64_t slots = std::min<int64_t>(std::max(opts.max_slots, G), int64_t(prompts.size()) * G);
  Runner runner(model, slots, ctx);
  Scheduler& sched = runner.scheduler();
  StepOpts so;
  so.prefill_chunk = std::max<int64_t>(1, opts.prefill_chunk);
  so.prefill_budget = so.prefill_chunk * slots;
  so.attn = opts.attn;

  auto request = [&](int64_t i, int64_t g) {
    GenRequest r;
    r.prompt = prompts[size_t(i)];
    r.stop_ids = opts.stop_ids;
    r.sampling = opts.sampling;
    r.sampling.seed = splitmix64(opts.sampling.seed ^ splitmix64(uint64_t(i * G + g)));
    r.max_tokens = g < 0 ? 0 : opts.max_new_tokens;
    return r;
  };
  std::vector<std::unique_ptr<Member>> live;  // owns every sequence the scheduler runs
  int64_t next = 0, reserved = 0;             // next prompt to admit; slots promised to leaders' groups
  // Into the given slots (those holding the prompt), or wherever admit() finds most reuse.
  auto admit_group = [&](int64_t i, const std::vector<int64_t>& into) {
    for (int64_t g = 0; g < G; ++g) {
      live.push_back(std::make_unique<Member>(request(i, g), vocab, ctx, i, g));
      if (into.empty()) sched.admit(*live.back());
      else sched.admit_to(*live.back(), into[size_t(g)]);
    }
  };
  auto fill = [&] {
    while (next < int64_t(prompts.size()) && sched.free_slots() - reserved >= G) {
      const int64_t i = next++;
      st.prompt_tokens += int64_t(prompts[size_t(i)].size());
      if (G == 1) {
        admit_group(i, {});
        continue;
      }
      live.push_back(std::make_unique<Member>(request(i, -1), vocab, ctx, i, -1));
      sched.admit(*live.back());
      live.back()->home = live.back()->slot;
      reserved += G - 1;  // the leader's own slot is the group's first
    }
  };
  try {
    fill();
    while (!live.empty()) {
      for (const Produced& p : runner.step(so)) {
        auto* m = static_cast<Member*>(p.seq);
        if (m->index >= 0) out[size_t(m->prompt)][size_t(m->index)].ids.push_back(p.token);
      }
      ++st.steps;
      // Finished sequences: a leader hands its prompt KV to its group, which starts at once.
      for (size_t k = 0; k < live.size();) {
        Member& m = *live[k];
        if (m.running()) {
          ++k;
          continue;
        }
        if (m.finish == FinishReason::Error) fail("generation failed: {}", m.error);
        if (m.index < 0) {
          // The leader's slot is free again and holds the prompt; the group takes it and G-1 copies.
          reserved -= G - 1;
          const int64_t i = m.prompt, src = m.home;
          live.erase(live.begin() + std::ptrdiff_t(k));
          std::vector<int64_t> keep;  // other finished leaders' prompts, not yet shared
          for (const auto& o : live)
            if (o->index < 0 && !o->running()) keep.push_back(o->home);
          std::vector<int64_t> into = runner.share_prefix(src, G - 1, keep);
          if (int64_t(into.size()) != G - 1) fail("generation: no free slots for a group");
          into.insert(into.begin(), src);
          admit_group(i, into);
          continue;
        }
        Completion& c = out[size_t(m.prompt)][size_t(m.index)];
        c.stopped = m.finish == FinishReason::Stop;
        st.generated += int64_t(c.ids.size());
        live.erase(live.begin() + std::ptrdiff_t(k));
      }
      fill();
    }
  } catch (...) {
    for (auto& m : live)
      if (m->running()) sched.finish(*m, FinishReason::Error);  // free the slots before the sequences go
    throw;
  }
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (stats) *stats = st;
  return out;
}

}  // namespace fathom
