#pragma once
// Places sequences in KV slots and decides what each step computes.
// Slots double as a prefix cache: a free slot keeps the tokens whose KV it still holds, and
// a new sequence takes the free slot sharing its longest prefix, so a conversation that
// comes back only computes what is new.
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/sequence.h"

namespace fathom {

struct StepOpts {
  int64_t prefill_chunk = 256;   // prompt tokens per sequence per step
  int64_t prefill_budget = 512;  // prompt tokens per step over all sequences
  AttnMode attn = AttnMode::Absorbed;
  const TraceFn* trace = nullptr;
};

class Scheduler {
 public:
  Scheduler(int64_t n_slots, int64_t max_ctx);

  bool can_admit() const { return int64_t(running_.size()) < int64_t(slots_.size()); }
  // Gives `s` the free slot whose cached tokens share the longest prefix with its prompt
  // (the least recently used among equals) and skips what it can reuse: s.pos = s.cached.
  // At least the last prompt token is recomputed, as its logits start the completion. A
  // drafting sequence reuses no more than the slot's MTP cache also holds (it needs the main
  // model's hidden states of every position after that). Requires can_admit().
  void admit(Sequence& s);
  // The same into a given free slot (e.g. one share_prefix filled).
  void admit_to(Sequence& s, int64_t slot);
  // Ends a running sequence: its slot keeps the tokens whose KV it holds, for later prefixes.
  void finish(Sequence& s, FinishReason r, std::string error = {});
  // Copies free slot `src`'s cached tokens to up to `n` other free slots (the least recently
  // used first, never one in `keep`) and returns those slots; the caller copies their KV. Sequences with that
  // prefix admitted next then reuse it in distinct slots (a group sharing its prompt).
  std::vector<int64_t> share_prefix(int64_t src, int64_t n, const std::vector<int64_t>& keep = {});
  int64_t cached_tokens(int64_t slot) const { return int64_t(slots_[size_t(slot)].cached.size()); }
  int64_t free_slots() const { return n_slots() - int64_t(running_.size()); }
  // Forgets every free slot's tokens, so the next admissions read their whole prompts.
  void clear_prefix_cache();

  // The next step's chunks, one per sequence that gets one, in admission order: a decoding
  // sequence its last token (and its drafts, to verify), a prefilling one the next piece of its prompt within the
  // per-sequence chunk and the step's budget (so decodes keep their pace while a long
  // prompt is read). seqs[i] is the sequence behind batch[i].
  void schedule(const StepOpts& o, std::vector<SeqChunk>& batch, std::vector<Sequence*>& seqs) const;

  const std::vector<Sequence*>& running() const { return running_; }
  int64_t n_slots() const { return int64_t(slots_.size()); }
  int64_t max_ctx() const { return max_ctx_; }
  int64_t kv_tokens() const;  // tokens held by running sequences

 private:
  struct Slot {
    std::vector<int32_t> cached;  // tokens whose KV this slot holds (prefix cache)
    int64_t mtp_rows = 0;         // of those, positions whose MTP cache rows hold too
    uint64_t last_used = 0;
    bool busy = false;
  };
  std::vector<Slot> slots_;
  std::vector<Sequence*> running_;  // admission order
  int64_t max_ctx_;
  uint64_t clock_ = 0;
};

}  // namespace fathom
