#pragma once
// The one generation step: the scheduler's chunks go through one batched Model::forward,
// every sequence whose prompt is read samples its next token, and sequences that emitted a
// stop id, reached max_tokens or filled the context finish. Engine (many slots, its own
// thread), Session (one slot, synchronous) and bench (timed steps) all drive this.
//
// Speculative decoding (a sequence with draft > 0, once enable_speculation()): after the step,
// the model's first MTP module reads the new positions (the main model's hidden states with
// the tokens that followed them) and, chained on its own output, proposes up to `draft` tokens.
// The next step verifies them with the last token in one chunk: the longest prefix the main
// model agrees with is kept, plus the main model's own next token (greedy: its argmax; sampling:
// rejection sampling, so the output follows the main model's distribution exactly). Rolling back
// is moving `pos` / `mtp_pos`: the KV of rejected positions lies beyond them and is overwritten
// before any row attends to it.
#include <cstdint>
#include <optional>
#include <vector>

#include "model/model.h"
#include "runtime/scheduler.h"
#include "runtime/sequence.h"

namespace fathom {

// Speculative decoding counts: draft tokens proposed and accepted, and the steps that
// verified them (one per sequence per step); each such step also emits one token of its own.
struct SpecStats {
  int64_t drafted = 0, accepted = 0, steps = 0;
  double acceptance() const { return drafted ? double(accepted) / double(drafted) : 0.0; }
  double tokens_per_step() const { return steps ? double(accepted + steps) / double(steps) : 0.0; }
};

struct Produced {
  Sequence* seq = nullptr;
  int32_t token = 0;
};

class Runner {
 public:
  Runner(Model& model, int64_t n_slots, int64_t max_ctx);

  Scheduler& scheduler() { return sched_; }
  const Scheduler& scheduler() const { return sched_; }
  int64_t vocab() const { return vocab_; }
  int64_t max_ctx() const { return sched_.max_ctx(); }
  const KvCache& cache() const { return cache_; }
  // Allocates the MTP cache and buffers for up to `max_draft` tokens per step (not needed
  // again for a smaller one). False (and nothing changes) when the model has no MTP module.
  bool enable_speculation(int64_t max_draft);
  const KvCache* mtp_cache() const { return mtp_cache_ ? &*mtp_cache_ : nullptr; }

  // Gives `n` more free slots the KV of free slot `src`'s cached tokens (see
  // Scheduler::share_prefix); returns those slots.
  std::vector<int64_t> share_prefix(int64_t src, int64_t n, const std::vector<int64_t>& keep = {});

  // Runs one step; nothing happens when no running sequence gets a chunk. Returns the
  // tokens produced, in batch order (valid until the next step). Sequences that finish
  // leave the scheduler's running list with their finish reason set. A throwing forward
  // leaves the sequences as they were before the step.
  const std::vector<Produced>& step(const StepOpts& o);
  int64_t steps() const { return steps_; }  // forwards run
  const SpecStats& spec_stats() const { return spec_; }  // totals over all sequences

 private:
  void sample(Sequence& s, float* row);  // row: [vocab] logits, modified
  void emit(Sequence& s, int32_t tok);   // appends a generated token
  // Emits tokens from the verify chunk's logits rows ([1 + drafts, vocab]); returns how many.
  int64_t verify(Sequence& s, float* rows);
  // Ends `s` if `tok` is a stop id or it reached max_tokens or the context; true if it did.
  bool maybe_finish(Sequence& s, int32_t tok);
  // Runs the MTP module over the positions each drafting sequence of the step added, then
  // drafts their next proposals.
  void draft(const StepOpts& o);
  int32_t propose(Sequence& s, const float* logits, int64_t j);  // the j-th draft from MTP logits

  Model& model_;
  int64_t vocab_, hidden_size_;
  KvCache cache_;
  Scheduler sched_;
  std::vector<SeqChunk> batch_;     // reused every step
  std::vector<Sequence*> seqs_;     // the sequence behind each batch row
  std::vector<float> logits_;       // [rows, vocab]: per chunk its last row, or every row of a verify chunk
  std::vector<Produced> produced_;
  int64_t steps_ = 0;

  // Speculation (empty until enable_speculation).
  std::optional<KvCache> mtp_cache_;
  int64_t max_draft_ = 0;
  std::vector<float> hidden_;        // [batch rows, D] the main model's, after the final norm
  std::vector<float> mtp_hidden_[2]; // [n_slots or more, D] MTP outputs, ping-pong while chaining
  std::vector<float> mtp_logits_;    // [n_slots, vocab]
  std::vector<MtpChunk> mtp_batch_;
  std::vector<int64_t> pos0_, row0_;   // per chunk: its sequence's pos before the step, its first row
  std::vector<Sequence*> mtp_seqs_;
  std::vector<int64_t> want_;          // per sequence of mtp_seqs_: drafts it gets this step
  std::vector<const float*> chain_in_;  // per sequence of mtp_seqs_: the hidden row it drafts from
  std::vector<float> residual_;      // [vocab] max(0, p - q) on a rejection
  std::vector<float> p_;             // [vocab] the main model's distribution for a row
  SpecStats spec_;
};

}  // namespace fathom
