#include "train/data.h"

#include <algorithm>
#include <cmath>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"
#include "core/random.h"
#include "core/thread_pool.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom::train {

namespace {

using ojson = nlohmann::ordered_json;

// One non-empty line of the file.
struct Example {
  int64_t line = 0;  // 1-based, for messages
  bool chat = false;
  std::string text;  // a document (chat == false)
  ojson messages;    // chat == true
  ojson extra;       // template globals from the line ("tools")
};

// Tokens of one example with their loss mask.
struct Tokens {
  std::vector<int32_t> ids;
  std::vector<uint8_t> target;  // 1: an assistant token (chat), or every token (text)
};

bool is_json_object(std::string_view line) {
  const ojson j = ojson::parse(line, nullptr, /*allow_exceptions=*/false);
  return j.is_object();
}

Example parse_jsonl_line(const std::string& path, int64_t line_no, std::string_view line) {
  Example ex;
  ex.line = line_no;
  ojson j;
  try {
    j = ojson::parse(line);
  } catch (const ojson::exception& e) {
    fail("{}:{}: malformed JSON: {}", path, line_no, e.what());
  }
  if (!j.is_object()) fail("{}:{}: expected a JSON object per line", path, line_no);
  if (auto it = j.find("messages"); it != j.end()) {
    if (!it->is_array() || it->empty()) fail("{}:{}: \"messages\" must be a non-empty array", path, line_no);
    for (const ojson& m : *it)
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
        fail("{}:{}: every message must be an object with a string \"role\"", path, line_no);
    ex.chat = true;
    ex.messages = std::move(*it);
    ex.extra = ojson::object();
    if (auto t = j.find("tools"); t != j.end()) ex.extra["tools"] = std::move(*t);
    return ex;
  }
  if (auto it = j.find("text"); it != j.end()) {
    if (!it->is_string()) fail("{}:{}: \"text\" must be a string", path, line_no);
    ex.text = it->get<std::string>();
    return ex;
  }
  fail("{}:{}: a JSONL line needs \"text\" (a document) or \"messages\" (a chat example)", path, line_no);
}

std::vector<Example> read_examples(const DataOpts& opts) {
  const std::string data = read_file(opts.path);
  std::vector<Example> out;
  bool jsonl = opts.mode == DataOpts::Chat;
  bool decided = opts.mode != DataOpts::Auto;
  int64_t line_no = 0;
  for (size_t pos = 0; pos < data.size();) {
    size_t end = data.find('\n', pos);
    if (end == std::string::npos) end = data.size();
    std::string_view line(data.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (!decided) {
      jsonl = is_json_object(line);
      decided = true;
    }
    if (jsonl) {
      out.push_back(parse_jsonl_line(opts.path, line_no, line));
    } else {
      Example ex;
      ex.line = line_no;
      ex.text = std::string(line);
      out.push_back(std::move(ex));
    }
  }
  if (out.empty()) fail("{}: no data (the file has no non-empty line)", opts.path);
  return out;
}

// Renders a chat example and marks what each assistant turn adds. Assistant message i's
// span is where render(messages[:i+1]) extends render(messages[:i], add_generation_prompt):
// the generation prompt is the model's cue and not its output; the rest (content, reasoning,
// tool calls, the end-of-turn token) is. Each span must sit, unchanged, in the rendering of
// the whole conversation; a template that renders earlier turns differently once later ones
// follow (dropping old reasoning, say) is refused rather than guessed at. The text is
// tokenized one segment at a time, so no token straddles a span edge; templates end the
// generation prompt and the turn with special tokens or newlines, where the pre-tokenizer
// splits anyway, so this matches tokenizing the whole text.
Tokens chat_tokens(const Example& ex, const std::string& path, const Tokenizer& tok, const ChatTemplate& tmpl) {
  const ojson& msgs = ex.messages;
  auto prefix = [&](size_t n) {
    ojson p = ojson::array();
    for (size_t i = 0; i < n; ++i) p.push_back(msgs[i]);
    return p;
  };
  std::string full;
  std::vector<std::pair<size_t, size_t>> spans;  // [begin, end) byte ranges of full
  try {
    full = tmpl.render(msgs, false, ex.extra);
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (msgs[i]["role"] != "assistant") continue;
      const std::string before = tmpl.render(prefix(i), true, ex.extra);
      const std::string after = tmpl.render(prefix(i + 1), false, ex.extra);
      const size_t last = spans.empty() ? 0 : spans.back().second;
      if (!after.starts_with(before) || !full.starts_with(after) || before.size() < last)
        fail("the chat template does not render message {} (assistant) as an extension of the "
             "conversation before it, so its tokens cannot be told apart",
             i);
      spans.emplace_back(before.size(), after.size());
    }
  } catch (const Error& e) {
    fail("{}:{}: {}", path, ex.line, e.what());
  }
  Tokens t;
  auto add = [&](size_t b, size_t e, uint8_t target) {
    if (b >= e) return;
    const std::vector<int32_t> ids = tok.encode(std::string_view(full).substr(b, e - b));
    t.ids.insert(t.ids.end(), ids.begin(), ids.end());
    t.target.insert(t.target.end(), ids.size(), target);
  };
  size_t pos = 0;
  for (auto [b, e] : spans) {
    add(pos, b, 0);
    add(b, e, 1);
    pos = e;
  }
  add(pos, full.size(), 0);
  return t;
}

// A document's tokens and EOS, all targets; or a chat example's tokens and mask.
Tokens tokenize(const Example& ex, const std::string& path, const Tokenizer& tok, const ChatTemplate* tmpl,
                int32_t eos) {
  if (ex.chat) {
    if (!tmpl) fail("{}:{}: a chat example, but the model has no chat template", path, ex.line);
    return chat_tokens(ex, path, tok, *tmpl);
  }
  Tokens t;
  try {
    t.ids = tok.encode(ex.text);
  } catch (const Error& e) {
    fail("{}:{}: {}", path, ex.line, e.what());
  }
  t.ids.push_back(eos);
  t.target.assign(t.ids.size(), 1);
  return t;
}

// Appends stream[0, n*T) as n sequences; position 0 of each is never a target.
struct Packer {
  int64_t T;
  void pack(const Tokens& stream, bool pad_tail, int32_t eos, std::vector<int32_t>& ids,
            std::vector<uint8_t>& target) const {
    const int64_t n = static_cast<int64_t>(stream.ids.size());
    for (int64_t s = 0; s < n; s += T) {
      const int64_t len = std::min(T, n - s);
      if (len < T && !pad_tail) break;
      append(stream, s, len, eos, ids, target);
    }
  }
  // One sequence from stream[s, s+len), padded to T with EOS that is not a target.
  void append(const Tokens& stream, int64_t s, int64_t len, int32_t eos, std::vector<int32_t>& ids,
              std::vector<uint8_t>& target) const {
    ids.insert(ids.end(), stream.ids.begin() + s, stream.ids.begin() + s + len);
    ids.insert(ids.end(), T - len, eos);
    const size_t first = target.size();
    target.insert(target.end(), stream.target.begin() + s, stream.target.begin() + s + len);
    target.insert(target.end(), T - len, 0);
    target[first] = 0;
  }
};

// A bijection of [0, 2^(2h)): a four-round Feistel network keyed by `key`. Cycle-walking it
// (below) gives a permutation of [0, n) computed one position at a time, with no table.
uint64_t feistel(uint64_t x, int h, uint64_t key) {
  const uint64_t mask = (uint64_t{1} << h) - 1;
  uint64_t l = x >> h, r = x & mask;
  for (uint64_t round = 0; round < 4; ++round) {
    const uint64_t f = splitmix64(r ^ splitmix64(key + round)) & mask;
    const uint64_t nl = r;
    r = l ^ f;
    l = nl;
  }
  return (l << h) | r;
}

void check_batch_args(int64_t B, int64_t T) {
  FATHOM_CHECK(B >= 1 && T >= 1, "data: batch ({}) and sequence length ({}) must be positive", B, T);
}

}  // namespace

std::vector<int64_t> held_out_docs(int64_t n, double val_frac, uint64_t seed) {
  FATHOM_CHECK(val_frac >= 0 && val_frac < 1, "data: the validation fraction must be in [0, 1), got {}", val_frac);
  if (val_frac == 0 || n < 2) return {};
  const int64_t k = std::clamp<int64_t>(std::llround(val_frac * static_cast<double>(n)), 1, n - 1);
  const uint64_t key = splitmix64(seed ^ 0x76616c5f73706c74ull);  // distinct from the order's keys
  std::vector<std::pair<uint64_t, int64_t>> h(n);
  for (int64_t i = 0; i < n; ++i) h[i] = {splitmix64(key ^ static_cast<uint64_t>(i)), i};
  std::nth_element(h.begin(), h.begin() + k, h.end());
  std::vector<int64_t> out(k);
  for (int64_t i = 0; i < k; ++i) out[i] = h[i].second;
  std::sort(out.begin(), out.end());
  return out;
}

Dataset Dataset::load(const DataOpts& opts, const Tokenizer& tok, const ChatTemplate* tmpl) {
  FATHOM_CHECK(opts.seq_len >= 2, "data: the sequence length must be at least 2, got {}", opts.seq_len);
  FATHOM_CHECK(opts.batch >= 1, "data: the batch size must be positive, got {}", opts.batch);
  const std::optional<int32_t> eos = tok.eos_id();
  FATHOM_CHECK(eos.has_value(), "data: the tokenizer has no EOS token (tokenizer_config.json eos_token), "
               "which ends each document");
  const std::vector<Example> examples = read_examples(opts);

  Dataset d;
  d.T_ = opts.seq_len;
  d.B_ = opts.batch;
  d.seed_ = opts.seed;
  d.val_docs_ = held_out_docs(static_cast<int64_t>(examples.size()), opts.val_frac, opts.seed);
  std::vector<uint8_t> held(examples.size(), 0);
  for (int64_t i : d.val_docs_) held[i] = 1;

  // Tokenizing dominates loading; examples are independent, so it runs in parallel.
  std::vector<Tokens> toks(examples.size());
  ThreadPool pool(opts.threads);
  pool.parallel_for(static_cast<int64_t>(examples.size()), 64, [&](int64_t begin, int64_t end, int) {
    for (int64_t i = begin; i < end; ++i) toks[i] = tokenize(examples[i], opts.path, tok, tmpl, *eos);
  });

  // Documents go into one stream per split; chat examples become sequences of their own,
  // stored after the split's packed documents.
  Tokens stream[2];
  Seqs chat[2];
  const Packer packer{opts.seq_len};
  for (size_t i = 0; i < examples.size(); ++i) {
    Tokens& t = toks[i];
    if (examples[i].chat) {
      const int64_t len = std::min<int64_t>(opts.seq_len, static_cast<int64_t>(t.ids.size()));
      // Nothing to learn from an example whose assistant turns all fall past the cut.
      if (len < 2 || std::find(t.target.begin() + 1, t.target.begin() + len, 1) == t.target.begin() + len) continue;
      packer.append(t, 0, len, *eos, chat[held[i]].ids, chat[held[i]].target);
    } else {
      Tokens& s = stream[held[i]];
      s.ids.insert(s.ids.end(), t.ids.begin(), t.ids.end());
      s.target.insert(s.target.end(), t.target.begin(), t.target.end());
    }
    t = Tokens{};  // release as we go
  }
  Seqs* split[2] = {&d.train_, &d.val_};
  for (int v = 0; v < 2; ++v) {
    // Held-out data is scarce: its last partial sequence is kept, padded.
    packer.pack(stream[v], /*pad_tail=*/v == 1, *eos, split[v]->ids, split[v]->target);
    split[v]->ids.insert(split[v]->ids.end(), chat[v].ids.begin(), chat[v].ids.end());
    split[v]->target.insert(split[v]->target.end(), chat[v].target.begin(), chat[v].target.end());
  }
  if (d.train_sequences() == 0)
    fail("{}: no full training sequence of {} tokens ({} document tokens, {} chat examples kept for training)",
         opts.path, opts.seq_len, stream[0].ids.size(), chat[0].ids.size() / opts.seq_len);
  return d;
}

int64_t Dataset::train_order(int64_t epoch, int64_t k) const {
  const int64_t n = train_sequences();
  FATHOM_CHECK(epoch >= 0 && k >= 0 && k < n, "data: position {} of epoch {} is out of range ({} sequences)", k,
               epoch, n);
  int h = 1;
  while ((uint64_t{1} << (2 * h)) < static_cast<uint64_t>(n)) ++h;
  const uint64_t key = splitmix64(splitmix64(seed_) ^ static_cast<uint64_t>(epoch));
  uint64_t x = static_cast<uint64_t>(k);
  do x = feistel(x, h, key);
  while (x >= static_cast<uint64_t>(n));
  return static_cast<int64_t>(x);
}

Batch Dataset::train_batch(int64_t index, int rank, int nranks) const {
  FATHOM_CHECK(nranks >= 1 && rank >= 0 && rank < nranks, "data: rank {} of {} is out of range", rank, nranks);
  FATHOM_CHECK(B_ % nranks == 0, "data: the batch of {} sequences does not split evenly over {} ranks", B_,
               nranks);
  FATHOM_CHECK(index >= 0, "data: batch index {} is negative", index);
  const int64_t n = train_sequences();
  Batch b;
  b.B = B_ / nranks;
  b.T = T_;
  b.ids.resize(b.B * T_);
  b.target.resize(b.B * T_);
  for (int64_t j = 0; j < b.B; ++j) {
    const int64_t pos = index * B_ + rank * b.B + j;  // in the endless sequence order
    const int64_t s = train_order(pos / n, pos % n);
    std::copy_n(train_.ids.begin() + s * T_, T_, b.ids.begin() + j * T_);
    std::copy_n(train_.target.begin() + s * T_, T_, b.target.begin() + j * T_);
  }
  return b;
}

std::vector<Batch> Dataset::val_batches() const {
  std::vector<Batch> out;
  const int64_t n = val_sequences();
  for (int64_t s = 0; s < n; s += B_) {
    Batch b;
    b.B = std::min(B_, n - s);
    b.T = T_;
    b.ids.assign(val_.ids.begin() + s * T_, val_.ids.begin() + (s + b.B) * T_);
    b.target.assign(val_.target.begin() + s * T_, val_.target.begin() + (s + b.B) * T_);
    out.push_back(std::move(b));
  }
  return out;
}

Batch batch_from_ids(const std::vector<int32_t>& ids, int64_t B, int64_t T) {
  check_batch_args(B, T);
  FATHOM_CHECK(static_cast<int64_t>(ids.size()) == B * T, "data: {} ids do not make a batch of {} x {}",
               ids.size(), B, T);
  Batch b;
  b.B = B;
  b.T = T;
  b.ids = ids;
  b.target.assign(ids.size(), 1);
  for (int64_t r = 0; r < B; ++r) b.target[r * T] = 0;
  return b;
}

}  // namespace fathom::train
