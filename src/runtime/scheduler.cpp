#include "runtime/scheduler.h"

#include <algorithm>

namespace fathom {

namespace {

int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return int64_t(i);
}

}  // namespace

Scheduler::Scheduler(int64_t n_slots, int64_t max_ctx) : slots_(size_t(n_slots)), max_ctx_(max_ctx) {
  if (n_slots < 1) fail("scheduler: need at least one slot");
  for (auto& s : slots_) s.cached.reserve(size_t(max_ctx));
  running_.reserve(size_t(n_slots));
}

void Scheduler::admit(Sequence& s) {
  int64_t best = -1, best_lcp = -1;
  for (int64_t i = 0; i < int64_t(slots_.size()); ++i) {
    const Slot& sl = slots_[size_t(i)];
    if (sl.busy) continue;
    const int64_t l = common_prefix(sl.cached, s.tokens);
    if (l > best_lcp || (l == best_lcp && sl.last_used < slots_[size_t(best)].last_used)) {
      best = i;
      best_lcp = l;
    }
  }
  if (best < 0) fail("scheduler: no free slot");
  admit_to(s, best);
}

void Scheduler::admit_to(Sequence& s, int64_t slot) {
  if (slot < 0 || slot >= n_slots() || slots_[size_t(slot)].busy) fail("scheduler: slot {} is not a free slot", slot);
  Slot& sl = slots_[size_t(slot)];
  const int64_t lcp = common_prefix(sl.cached, s.tokens);
  sl.busy = true;
  sl.cached.clear();
  s.slot = slot;
  s.cached = s.pos = std::min(lcp, s.n_prompt - 1);
  // MTP row i also depends on token i+1.
  if (s.draft > 0) s.cached = s.pos = std::max<int64_t>(0, std::min(s.pos, std::min(sl.mtp_rows, lcp - 1)));
  s.mtp_pos = s.pos;
  running_.push_back(&s);
}

void Scheduler::finish(Sequence& s, FinishReason r, std::string error) {
  if (s.slot < 0) return;
  Slot& sl = slots_[size_t(s.slot)];
  sl.cached.assign(s.tokens.begin(), s.tokens.begin() + s.pos);
  sl.mtp_rows = s.draft > 0 ? std::min(s.mtp_pos, s.pos) : 0;
  sl.busy = false;
  sl.last_used = ++clock_;
  s.slot = -1;
  s.finish = r;
  s.error = std::move(error);
  std::erase(running_, &s);
}

std::vector<int64_t> Scheduler::share_prefix(int64_t src, int64_t n, const std::vector<int64_t>& keep) {
  if (src < 0 || src >= n_slots() || slots_[size_t(src)].busy) fail("scheduler: slot {} is not a free slot", src);
  std::vector<int64_t> free;
  for (int64_t i = 0; i < n_slots(); ++i)
    if (i != src && !slots_[size_t(i)].busy && std::find(keep.begin(), keep.end(), i) == keep.end()) free.push_back(i);
  std::stable_sort(free.begin(), free.end(),
                   [&](int64_t a, int64_t b) { return slots_[size_t(a)].last_used < slots_[size_t(b)].last_used; });
  if (int64_t(free.size()) > n) free.resize(size_t(n));
  const Slot& from = slots_[size_t(src)];
  for (int64_t d : free) {
    Slot& to = slots_[size_t(d)];
    to.cached = from.cached;
    to.mtp_rows = 0;
    to.last_used = from.last_used;
  }
  return free;
}

void Scheduler::clear_prefix_cache() {
  for (auto& sl : slots_)
    if (!sl.busy) {
      sl.cached.clear();
      sl.mtp_rows = 0;
    }
}

void Scheduler::schedule(const StepOpts& o, std::vector<SeqChunk>& batch, std::vector<Sequence*>& seqs) const {
  batch.clear();
  seqs.clear();
  const int64_t chunk = std::max<int64_t>(1, o.prefill_chunk);
  int64_t budget = o.prefill_budget;
  for (Sequence* sp : running_) {
    Sequence& s = *sp;
    int64_t n = 1;
    if (s.pos < s.n_prompt) {
      if (budget <= 0) continue;
      n = std::min({chunk, s.n_prompt - s.pos, budget});
      budget -= n;
    } else if (!s.drafts.empty()) {
      batch.push_back(SeqChunk{s.slot, s.pos, s.chunk.data(), int64_t(s.chunk.size()), true});
      seqs.push_back(&s);
      continue;
    }
    batch.push_back(SeqChunk{s.slot, s.pos, s.tokens.data() + s.pos, n, false});
    seqs.push_back(&s);
  }
}

int64_t Scheduler::kv_tokens() const {
  int64_t used = 0;
  for (const Sequence* s : running_) used += s->pos;
  return used;
}

}  // namespace fathom
