#pragma once
// Training data: a text or JSONL file turned into fixed-length token sequences with a loss
// mask, split into train and held-out sets, and served in a seeded, reproducible order.
//
// Input, one example per line (empty lines skipped):
//   plain text  each line is a document;
//   JSONL       {"text": "..."} is a document; {"messages": [{role, content}, ...]} (OpenAI
//               style; "tools" is passed to the template when present) is a chat example.
// Documents are tokenized, each followed by EOS, concatenated into one stream and cut into
// seq_len-token sequences (a trailing partial one is dropped); every token is a target.
// Chat examples are rendered with the model's chat template; only what the assistant turns
// add (content, any reasoning the template renders, and the end-of-turn token) is a target.
// Each chat example is its own sequence: truncated to seq_len, or padded with EOS that is
// not a target. Chat sequences with no target left are dropped.
// Held-out documents are packed the same way into a stream of their own, except that its
// last partial sequence is kept (padded like a chat example): validation data is scarce.
// Each split stores its packed documents first, then its chat examples, in file order.
#include <cstdint>
#include <string>
#include <vector>

#include "train/param.h"

namespace fathom {
class Tokenizer;
struct ChatTemplate;
}  // namespace fathom

namespace fathom::train {

// Batch (train/param.h): B sequences of T ids and which tokens are loss targets.

struct DataOpts {
  std::string path;
  int64_t seq_len = 0;
  int64_t batch = 0;  // sequences per global batch
  uint64_t seed = 0;
  // Fraction of documents held out for validation (at least one when there are two or
  // more documents, and never all of them); 0 holds out none.
  double val_frac = 0.05;
  // Auto: JSONL when the first non-empty line is a JSON object, else plain text.
  // Text: every line is a document, even one that looks like JSON.
  // Chat: JSONL (chat examples and {"text"} documents may be mixed).
  enum Mode { Auto, Text, Chat } mode = Auto;
  int threads = 0;  // for tokenizing; 0: all cores
};

class Dataset {
 public:
  // tmpl: the chat template for "messages" lines; null when the data has none.
  static Dataset load(const DataOpts& opts, const Tokenizer& tok, const ChatTemplate* tmpl);

  int64_t seq_len() const { return T_; }
  int64_t batch_size() const { return B_; }
  int64_t train_sequences() const { return static_cast<int64_t>(train_.ids.size()) / T_; }
  int64_t val_sequences() const { return static_cast<int64_t>(val_.ids.size()) / T_; }

  // The index-th global batch of the endless shuffled order: epoch e is a seeded
  // permutation of the training sequences, and batches run on across epoch ends. With
  // nranks > 1, rank r gets rows [r * B/nranks, (r+1) * B/nranks) of that global batch.
  Batch train_batch(int64_t index, int rank = 0, int nranks = 1) const;
  // Position k of epoch e's order: which training sequence it is.
  int64_t train_order(int64_t epoch, int64_t k) const;
  // Every held-out sequence in file order, `batch` at a time (the last may be smaller).
  std::vector<Batch> val_batches() const;

  // The documents (and chat examples) held out, by index among the file's non-empty lines.
  const std::vector<int64_t>& val_docs() const { return val_docs_; }

 private:
  struct Seqs {
    std::vector<int32_t> ids;     // [N, T]
    std::vector<uint8_t> target;  // [N, T]
  };
  int64_t T_ = 0, B_ = 0;
  uint64_t seed_ = 0;
  Seqs train_, val_;
  std::vector<int64_t> val_docs_;
};

// A batch of B rows of T ids read from ids (exactly B * T of them); every token but the
// first of each row is a target.
Batch batch_from_ids(const std::vector<int32_t>& ids, int64_t B, int64_t T);

// Which documents of n are held out for validation: the round(val_frac * n) (clamped to
// [1, n-1] when n >= 2 and val_frac > 0) with the smallest seeded hash of their index,
// ascending. Stable: it depends only on n, val_frac and the seed.
std::vector<int64_t> held_out_docs(int64_t n, double val_frac, uint64_t seed);

}  // namespace fathom::train
