#pragma once
// The one generation step: the scheduler's chunks go through one batched Model::forward,
// every sequence whose prompt is read samples its next token, and sequences that emitted a
// stop id, reached max_tokens or filled the context finish. Engine (many slots, its own
// thread), Session (one slot, synchronous) and bench (timed steps) all drive this.
#include <cstdint>
#include <vector>

#include "model/model.h"
#include "runtime/scheduler.h"
#include "runtime/sequence.h"

namespace fathom {

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

  // Runs one step; nothing happens when no running sequence gets a chunk. Returns the
  // tokens produced, in batch order (valid until the next step). Sequences that finish
  // leave the scheduler's running list with their finish reason set. A throwing forward
  // leaves the sequences as they were before the step.
  const std::vector<Produced>& step(const StepOpts& o);
  int64_t steps() const { return steps_; }  // forwards run

 private:
  void sample(Sequence& s, float* row);  // row: [vocab] logits, modified

  Model& model_;
  int64_t vocab_;
  KvCache cache_;
  Scheduler sched_;
  std::vector<SeqChunk> batch_;     // reused every step
  std::vector<Sequence*> seqs_;     // the sequence behind each batch row
  std::vector<float> logits_;       // [n_slots, vocab]: one row per chunk (its last token)
  std::vector<Produced> produced_;
  int64_t steps_ = 0;
};

}  // namespace fathom
