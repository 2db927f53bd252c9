#include "runtime/runner.h"

#include <algorithm>

namespace fathom {

Runner::Runner(Model& model, int64_t n_slots, int64_t max_ctx)
    : model_(model), vocab_(model.config().vocab_size), hidden_size_(model.config().hidden_size),
      cache_(model.make_cache(n_slots, max_ctx)), sched_(n_slots, max_ctx) {
  batch_.reserve(size_t(n_slots));
  seqs_.reserve(size_t(n_slots));
  pos0_.reserve(size_t(n_slots));
  row0_.reserve(size_t(n_slots));
  logits_.resize(size_t(n_slots * vocab_));
  produced_.reserve(size_t(n_slots));
}

std::vector<int64_t> Runner::share_prefix(int64_t src, int64_t n, const std::vector<int64_t>& keep) {
  std::vector<int64_t> dst = sched_.share_prefix(src, n, keep);
  const int64_t rows = sched_.cached_tokens(src), w = cache_.width();
  if (rows == 0) return dst;
  for (int64_t d : dst)
    for (int64_t l = 0; l < cache_.n_layers(); ++l)
      model_.backend().copy_rows({cache_.at(l, src, 0), rows, w, w}, {cache_.at(l, d, 0), rows, w, w});
  return dst;
}

bool Runner::enable_speculation(int64_t max_draft) {
  if (model_.mtp_modules() == 0) return false;
  const int64_t n = sched_.n_slots(), V = vocab_, D = hidden_size_;
  if (!mtp_cache_) mtp_cache_.emplace(model_.make_mtp_cache(n, sched_.max_ctx()));
  max_draft_ = std::max(max_draft_, max_draft);
  logits_.resize(std::max(logits_.size(), size_t(n * (1 + max_draft_) * V)));
  produced_.reserve(size_t(n * (1 + max_draft_)));
  mtp_logits_.resize(size_t(n * V));
  for (auto& h : mtp_hidden_) h.reserve(size_t(n * D));
  mtp_batch_.reserve(size_t(n));
  mtp_seqs_.reserve(size_t(n));
  want_.reserve(size_t(n));
  chain_in_.reserve(size_t(n));
  residual_.resize(size_t(V));
  p_.resize(size_t(V));
  return true;
}

const std::vector<Produced>& Runner::step(const StepOpts& o) {
  produced_.clear();
  sched_.schedule(o, batch_, seqs_);
  if (batch_.empty()) return produced_;
  int64_t rows = 0;
  bool spec = false;
  pos0_.clear();
  row0_.clear();
  for (size_t i = 0; i < batch_.size(); ++i) {
    pos0_.push_back(seqs_[i]->pos);
    row0_.push_back(rows);
    rows += batch_[i].n;
    spec |= mtp_cache_ && seqs_[i]->draft > 0;
  }
  ForwardOpts fo;
  fo.attn = o.attn;
  fo.trace = o.trace;
  if (spec) {
    if (hidden_.size() < size_t(rows * hidden_size_)) hidden_.resize(size_t(rows * hidden_size_));
    fo.final_hidden = hidden_.data();
  }
  model_.forward(batch_, cache_, logits_.data(), fo);
  ++steps_;
  float* row = logits_.data();
  for (size_t i = 0; i < batch_.size(); ++i) {
    Sequence& s = *seqs_[i];
    const SeqChunk& c = batch_[i];
    if (c.all_logits) {  // only verify chunks ask for every row
      verify(s, row);
      row += c.n * vocab_;
      continue;
    }
    float* last = row;
    row += vocab_;
    s.pos += c.n;
    if (s.pos < s.n_prompt) continue;  // more prompt to read
    if (s.generated >= s.max_tokens) {  // asked to read the prompt only
      sched_.finish(s, FinishReason::Length);
      continue;
    }
    sample(s, last);
    produced_.push_back(Produced{&s, s.last_token()});
    maybe_finish(s, s.last_token());
  }
  if (spec) draft(o);
  return produced_;
}

bool Runner::maybe_finish(Sequence& s, int32_t tok) {
  if (std::find(s.stop_ids.begin(), s.stop_ids.end(), tok) != s.stop_ids.end()) {
    sched_.finish(s, FinishReason::Stop);
    return true;
  }
  if (s.generated >= s.max_tokens || int64_t(s.tokens.size()) >= sched_.max_ctx()) {
    sched_.finish(s, FinishReason::Length);
    return true;
  }
  return false;
}

int64_t Runner::verify(Sequence& s, float* rows) {
  const int64_t nd = int64_t(s.drafts.size()), V = vocab_, pos0 = s.pos;
  ++s.verify_steps;
  ++spec_.steps;
  s.drafted += nd;
  spec_.drafted += nd;
  int64_t r = 0;
  for (; r <= nd; ++r) {
    float* row = rows + r * V;
    int32_t tok;
    bool agree = false;
    if (r == nd || s.sampler.greedy()) {
      // Greedy: the main model's argmax is the token whatever was drafted.
      tok = s.sampler.sample(row);
      agree = r < nd && tok == s.drafts[size_t(r)];
    } else {
      // Accept draft d with probability min(1, p(d) / q(d)); else draw from max(0, p - q).
      const int32_t d = s.drafts[size_t(r)];
      const float* q = s.draft_probs.data() + r * V;
      s.sampler.distribution(row, p_.data());
      if (s.sampler.uniform() * double(q[d]) < double(p_[size_t(d)])) {
        tok = d;
        agree = true;
      } else {
        double total = 0;
        for (int64_t v = 0; v < V; ++v) total += residual_[size_t(v)] = std::max(0.0f, p_[size_t(v)] - q[v]);
        tok = s.sampler.draw(total > 0 ? residual_.data() : p_.data(), V);
      }
    }
    if (agree) {
      ++s.accepted;
      ++spec_.accepted;
    }
    s.pos = pos0 + r + 1;  // the chunk's rows 0..r hold tokens of the sequence
    emit(s, tok);
    produced_.push_back(Produced{&s, tok});
    if (maybe_finish(s, tok) || !agree) break;
  }
  s.drafts.clear();
  return std::min(r, nd) + 1;
}

int32_t Runner::propose(Sequence& s, const float* logits, int64_t j) {
  int32_t d;
  if (s.sampler.greedy()) {
    d = argmax(logits, vocab_);
  } else {
    float* q = s.draft_probs.data() + j * vocab_;
    s.sampler.draft_distribution(logits, q);
    d = s.sampler.draw(q, vocab_);
  }
  s.drafts.push_back(d);
  return d;
}

void Runner::draft(const StepOpts& o) {
  const int64_t D = hidden_size_, V = vocab_;
  ForwardOpts fo;
  fo.attn = o.attn;
  // The MTP module reads the positions the step added: row p joins the main model's hidden
  // state at p with token p + 1.
  mtp_batch_.clear();
  mtp_seqs_.clear();
  int64_t rows = 0;
  for (size_t i = 0; i < batch_.size(); ++i) {
    Sequence& s = *seqs_[i];
    if (s.draft <= 0 || !s.running()) continue;
    if (s.mtp_pos != pos0_[i]) {  // its MTP cache missed positions: it decodes without drafts
      s.draft = 0;
      continue;
    }
    const int64_t n = s.pos - s.mtp_pos;
    if (n <= 0) continue;
    mtp_batch_.push_back(MtpChunk{s.slot, s.mtp_pos, hidden_.data() + row0_[i] * D, s.tokens.data() + s.mtp_pos + 1, n,
                                  false});
    mtp_seqs_.push_back(&s);
    rows += n;
  }
  if (mtp_batch_.empty()) return;
  mtp_hidden_[0].resize(std::max(mtp_hidden_[0].size(), size_t(rows * D)));
  model_.mtp_forward(0, mtp_batch_, *mtp_cache_, mtp_logits_.data(), mtp_hidden_[0].data(), fo);

  // First proposals from the last row of each; the rest chain the module on its own output.
  size_t keep = 0;
  int64_t end = 0;
  want_.clear();
  chain_in_.clear();
  for (size_t j = 0; j < mtp_seqs_.size(); ++j) {
    Sequence& s = *mtp_seqs_[j];
    end += mtp_batch_[j].n;
    s.mtp_pos = s.pos;
    s.drafts.clear();
    if (s.pos < s.n_prompt) continue;
    // A verify chunk of 1 + k rows fits the context, and all of it accepted stays within
    // max_tokens and leaves tokens.size() <= max_ctx, as plain decoding would.
    const int64_t k = std::min({s.draft, max_draft_, sched_.max_ctx() - s.pos - 2, s.max_tokens - s.generated - 1});
    if (k <= 0) continue;
    propose(s, mtp_logits_.data() + int64_t(j) * V, 0);
    mtp_seqs_[keep++] = &s;
    want_.push_back(k);
    chain_in_.push_back(mtp_hidden_[0].data() + (end - 1) * D);
  }
  mtp_seqs_.resize(keep);
  for (int64_t j = 1;; ++j) {
    mtp_batch_.clear();
    keep = 0;
    for (size_t x = 0; x < mtp_seqs_.size(); ++x) {
      if (want_[x] <= j) continue;
      mtp_seqs_[keep] = mtp_seqs_[x];
      want_[keep] = want_[x];
      chain_in_[keep] = chain_in_[x];
      Sequence& s = *mtp_seqs_[keep++];
      mtp_batch_.push_back(MtpChunk{s.slot, s.pos + j - 1, chain_in_[keep - 1], &s.drafts[size_t(j - 1)], 1, false});
    }
    mtp_seqs_.resize(keep);
    want_.resize(keep);
    chain_in_.resize(keep);
    if (keep == 0) break;
    std::vector<float>& out = mtp_hidden_[j % 2];
    out.resize(std::max(out.size(), keep * size_t(D)));
    model_.mtp_forward(0, mtp_batch_, *mtp_cache_, mtp_logits_.data(), out.data(), fo);
    for (size_t x = 0; x < keep; ++x) {
      propose(*mtp_seqs_[x], mtp_logits_.data() + int64_t(x) * V, j);
      chain_in_[x] = out.data() + int64_t(x) * D;
    }
  }
  for (size_t i = 0; i < batch_.size(); ++i) {
    Sequence& s = *seqs_[i];
    if (s.drafts.empty()) continue;
    s.chunk.clear();
    s.chunk.push_back(s.last_token());
    s.chunk.insert(s.chunk.end(), s.drafts.begin(), s.drafts.end());
  }
}

void Runner::sample(Sequence& s, float* row) { emit(s, s.sampler.sample(row)); }

void Runner::emit(Sequence& s, int32_t tok) {
  s.sampler.accept(tok);
  s.tokens.push_back(tok);  // capacity reserved when the sequence was made
  ++s.generated;
  if (s.top_logprobs < 0) return;
  // The k best alternatives by insertion into a short sorted list (k <= 20).
  const std::vector<float>& lp = s.sampler.last_logprobs();
  s.last_logprob = lp[size_t(tok)];
  s.last_top.clear();
  const size_t k = size_t(s.top_logprobs);
  for (int64_t v = 0; v < vocab_ && k > 0; ++v) {
    const float x = lp[size_t(v)];
    if (s.last_top.size() == k && x <= s.last_top.back().logprob) continue;
    const auto at = std::find_if(s.last_top.begin(), s.last_top.end(),
                                 [&](const TokenLogprob& t) { return x > t.logprob; }) - s.last_top.begin();
    if (s.last_top.size() == k) s.last_top.pop_back();  // stays within the reserved capacity
    s.last_top.insert(s.last_top.begin() + at, TokenLogprob{int32_t(v), x});
  }
}

}  // namespace fathom
