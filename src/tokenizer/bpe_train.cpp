#include "tokenizer/bpe_train.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "core/error.h"
#include "tokenizer/added_vocab.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"

namespace fathom {
namespace {

using ojson = nlohmann::ordered_json;

constexpr int32_t kFirstByteId = 3;  // after the three special tokens
constexpr int32_t kNumBytes = 256;

// DeepSeek-V3's pre-tokenizer: digits in runs of up to three, CJK runs, then its word
// pattern; ByteLevel without its own regex only maps the bytes.
ojson pre_tokenizer_spec() {
  auto split = [](const char* regex) {
    return ojson{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  ojson seq = ojson::array();
  seq.push_back(split("\\p{N}{1,3}"));
  seq.push_back(split("[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+"));
  seq.push_back(split(
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
      " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"));
  seq.push_back(ojson{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}});
  return ojson{{"type", "Sequence"}, {"pretokenizers", std::move(seq)}};
}

ojson byte_level(bool add_prefix_space, bool trim_offsets) {
  return ojson{{"type", "ByteLevel"},
               {"add_prefix_space", add_prefix_space},
               {"trim_offsets", trim_offsets},
               {"use_regex", true}};
}

// Raw bytes -> the byte-level spelling used for vocab keys and merges.
std::string byte_level_text(std::string_view raw) {
  const char32_t* table = PreTokenizer::byte_to_char();
  std::string s;
  for (unsigned char c : raw) utf8::append(s, table[c]);
  return s;
}

// The added-token matchers the encoder uses (special tokens first, then the others), so a
// special token in the corpus is cut out exactly where encoding would cut it.
struct AddedSplit {
  AddedMatcher special, other;
  AddedSplit() {
    std::vector<std::string> sp = bpe_special_tokens(), ad = bpe_added_tokens();
    std::vector<AddedToken> st, at;
    // Any id >= 0 marks a segment as an added token; the value is not used.
    for (const std::string& s : sp) st.push_back({.content = s, .id = 0, .special = true, .normalized = false});
    for (const std::string& s : ad) at.push_back({.content = s, .id = 0});
    special = AddedMatcher(sp, std::move(st));
    other = AddedMatcher(ad, std::move(at));
  }
};

// Distinct pre-tokens (raw bytes) and how often each occurs, sorted by bytes.
std::vector<std::pair<std::string, int64_t>> count_words(const std::vector<std::string>& texts) {
  const PreTokenizer pre(nlohmann::json::parse(pre_tokenizer_spec().dump()));
  const AddedSplit added;
  std::unordered_map<std::string, int64_t> counts;
  Workspace ws;
  std::vector<Segment> outer, inner;
  std::vector<Piece> pieces;
  for (const std::string& text : texts) {
    const size_t bad = utf8::find_invalid(text);
    if (bad != std::string::npos) fail("tokenizer training: a document is not valid UTF-8 (byte offset {})", bad);
    outer.clear();
    added.special.split(text, outer);
    for (const Segment& o : outer) {
      if (o.id >= 0 || o.end == o.begin) continue;
      const std::string_view seg = std::string_view(text).substr(o.begin, o.end - o.begin);
      inner.clear();
      added.other.split(seg, inner);
      for (const Segment& s : inner) {
        if (s.id >= 0 || s.end == s.begin) continue;
        pieces.clear();
        pre.run(seg.substr(s.begin, s.end - s.begin), ws, pieces);
        for (const Piece& p : pieces)
          if (!p.text.empty()) ++counts[std::string(p.text)];
      }
      ws.arena.clear();
    }
  }
  std::vector<std::pair<std::string, int64_t>> words(counts.begin(), counts.end());
  std::sort(words.begin(), words.end());
  return words;
}

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
int32_t key_left(uint64_t k) { return int32_t(k >> 32); }
int32_t key_right(uint64_t k) { return int32_t(k & 0xFFFFFFFFu); }

// The merge loop's state. Pair counts are kept exact; the heap may hold stale entries,
// whose counts are only ever too high (a pair not involving the newest token only loses
// occurrences), so a popped entry is re-queued with its current count until one is current.
class Merger {
 public:
  Merger(std::vector<std::pair<std::string, int64_t>> words, std::vector<std::string>& tokens)
      : tokens_(tokens), heap_(HeapLess{&tokens}) {
    for (int32_t i = 0; i < int32_t(tokens_.size()); ++i)
      if (i >= kFirstByteId) id_of_.emplace(tokens_[i], i);
    const int32_t n = int32_t(words.size());
    syms_.resize(n);
    freq_.resize(n);
    stamp_.assign(n, -1);
    for (int32_t w = 0; w < n; ++w) {
      freq_[w] = words[w].second;
      for (char c : words[w].first) syms_[w].push_back(id_of_.at(std::string(1, c)));
      for (size_t i = 0; i + 1 < syms_[w].size(); ++i) {
        const uint64_t k = pair_key(syms_[w][i], syms_[w][i + 1]);
        count_[k] += freq_[w];
        where_[k].push_back(w);
      }
    }
    std::vector<uint64_t> keys;
    keys.reserve(count_.size());
    for (const auto& [k, c] : count_) keys.push_back(k);
    std::sort(keys.begin(), keys.end());  // heap contents must not depend on hash order
    for (uint64_t k : keys) heap_.push({count_[k], k});
  }

  // The best pair with at least min_count occurrences, or nothing.
  std::optional<uint64_t> best(int64_t min_count) {
    while (!heap_.empty()) {
      const Entry e = heap_.top();
      const int64_t now = count_of(e.key);
      if (now == e.count) {
        if (now < min_count || now <= 0) return std::nullopt;
        heap_.pop();
        return e.key;
      }
      heap_.pop();
      if (now > 0) heap_.push({now, e.key});
    }
    return std::nullopt;
  }

  // Replaces every occurrence of the pair (left to right, non-overlapping) by one token;
  // returns its id (an existing one when the joined bytes are already a token).
  int32_t merge(uint64_t key, int32_t step) {
    const int32_t a = key_left(key), b = key_right(key);
    std::string joined = tokens_[a] + tokens_[b];
    int32_t c;
    if (auto it = id_of_.find(joined); it != id_of_.end()) {
      c = it->second;
    } else {
      c = int32_t(tokens_.size());
      id_of_.emplace(joined, c);
      tokens_.push_back(std::move(joined));
    }
    std::vector<int32_t> users = std::move(where_[key]);
    where_.erase(key);
    std::vector<uint64_t> fresh;  // pairs that contain the new token
    std::vector<int32_t> next;
    for (int32_t w : users) {
      if (stamp_[w] == step) continue;  // listed twice
      stamp_[w] = step;
      std::vector<int32_t>& s = syms_[w];
      next.clear();
      bool hit = false;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          next.push_back(c);
          ++i;
          hit = true;
        } else {
          next.push_back(s[i]);
        }
      }
      if (!hit) continue;  // the word lost the pair to an earlier merge
      // Words are short, so recounting all of a changed word's pairs is cheap and simple.
      for (size_t i = 0; i + 1 < s.size(); ++i) count_[pair_key(s[i], s[i + 1])] -= freq_[w];
      for (size_t i = 0; i + 1 < next.size(); ++i) {
        const uint64_t k = pair_key(next[i], next[i + 1]);
        count_[k] += freq_[w];
        if (next[i] == c || next[i + 1] == c) {
          where_[k].push_back(w);
          fresh.push_back(k);
        }
      }
      s.swap(next);
    }
    std::sort(fresh.begin(), fresh.end());
    fresh.erase(std::unique(fresh.begin(), fresh.end()), fresh.end());
    for (uint64_t k : fresh)
      if (count_of(k) > 0) heap_.push({count_of(k), k});
    return c;
  }

 private:
  struct Entry {
    int64_t count;
    uint64_t key;
  };
  // Orders the heap: higher count first, then the smaller (left, right) in raw bytes.
  struct HeapLess {
    const std::vector<std::string>* tokens;
    bool operator()(const Entry& x, const Entry& y) const {
      if (x.count != y.count) return x.count < y.count;
      const std::string& xl = (*tokens)[key_left(x.key)];
      const std::string& yl = (*tokens)[key_left(y.key)];
      if (xl != yl) return xl > yl;
      return (*tokens)[key_right(x.key)] > (*tokens)[key_right(y.key)];
    }
  };

  int64_t count_of(uint64_t k) const {
    auto it = count_.find(k);
    return it == count_.end() ? 0 : it->second;
  }

  std::vector<std::string>& tokens_;
  std::unordered_map<std::string, int32_t> id_of_;      // raw bytes -> id (not the specials)
  std::vector<std::vector<int32_t>> syms_;              // [words][symbols]
  std::vector<int64_t> freq_;                           // [words]
  std::vector<int32_t> stamp_;                          // [words] last merge step that visited it
  std::unordered_map<uint64_t, int64_t> count_;         // pair -> occurrences
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;  // pair -> words that had it
  std::priority_queue<Entry, std::vector<Entry>, HeapLess> heap_;
};

}  // namespace

const std::vector<std::string>& bpe_special_tokens() {
  static const std::vector<std::string> t = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜▁pad▁｜>"};
  return t;
}

const std::vector<std::string>& bpe_added_tokens() {
  static const std::vector<std::string> t = {"<think>", "</think>", "<｜User｜>", "<｜Assistant｜>"};
  return t;
}

const std::string& r1_chat_template() {
  // System messages are joined with a blank line and put right after BOS; a past assistant
  // turn keeps only what follows its last </think>.
  static const std::string t =
      "{%- set sys = namespace(text='', first=true) -%}"
      "{%- for m in messages if m['role'] == 'system' -%}"
      "{%- if not sys.first %}{% set sys.text = sys.text + '\\n\\n' %}{% endif -%}"
      "{%- set sys.text = sys.text + m['content'] -%}"
      "{%- set sys.first = false -%}"
      "{%- endfor -%}"
      "{{- bos_token + sys.text -}}"
      "{%- for m in messages -%}"
      "{%- if m['role'] == 'user' -%}"
      "{{- '<｜User｜>' + m['content'] -}}"
      "{%- elif m['role'] == 'assistant' -%}"
      "{{- '<｜Assistant｜>' + m['content'].split('</think>')[-1] + '<｜end▁of▁sentence｜>' -}}"
      "{%- endif -%}"
      "{%- endfor -%}"
      "{%- if add_generation_prompt -%}{{- '<｜Assistant｜><think>\\n' -}}{%- endif -%}";
  return t;
}

TrainedBpe train_bpe(const BpeTrainOpts& opts) {
  const int32_t fixed = kFirstByteId + kNumBytes + int32_t(bpe_added_tokens().size());
  if (opts.vocab_size < fixed)
    fail("tokenizer training: the vocab size must be at least {} (special, byte and chat tokens)", fixed);
  if (opts.min_frequency < 1) fail("tokenizer training: the minimum frequency must be at least 1");

  TrainedBpe out;
  out.chat_template = opts.chat_template.empty() ? r1_chat_template() : opts.chat_template;
  out.model_max_length = opts.model_max_length;
  out.tokens = bpe_special_tokens();
  const char32_t* table = PreTokenizer::byte_to_char();
  std::vector<int> bytes(kNumBytes);
  for (int i = 0; i < kNumBytes; ++i) bytes[i] = i;
  std::sort(bytes.begin(), bytes.end(), [&](int x, int y) { return table[x] < table[y]; });
  for (int b : bytes) out.tokens.push_back(std::string(1, char(b)));

  Merger merger(count_words(opts.texts), out.tokens);
  const size_t model_target = size_t(opts.vocab_size) - bpe_added_tokens().size();
  for (int32_t step = 0; out.tokens.size() < model_target; ++step) {
    const std::optional<uint64_t> key = merger.best(opts.min_frequency);
    if (!key) break;
    out.merges.emplace_back(key_left(*key), key_right(*key));
    merger.merge(*key, step);
  }
  return out;
}

int32_t TrainedBpe::vocab_size() const { return int32_t(tokens.size() + bpe_added_tokens().size()); }

std::string TrainedBpe::tokenizer_json() const {
  const size_t n_special = bpe_special_tokens().size();
  auto added_token = [](int32_t id, const std::string& content, bool special) {
    return ojson{{"id", id},          {"content", content}, {"single_word", false}, {"lstrip", false},
                 {"rstrip", false},   {"normalized", !special}, {"special", special}};
  };
  ojson added = ojson::array();
  for (size_t i = 0; i < n_special; ++i) added.push_back(added_token(int32_t(i), tokens[i], true));
  for (size_t i = 0; i < bpe_added_tokens().size(); ++i)
    added.push_back(added_token(int32_t(tokens.size() + i), bpe_added_tokens()[i], false));

  std::vector<std::string> spelled(tokens.size());  // vocab keys by id
  for (size_t i = 0; i < tokens.size(); ++i) spelled[i] = i < n_special ? tokens[i] : byte_level_text(tokens[i]);
  ojson vocab = ojson::object();
  for (size_t i = 0; i < spelled.size(); ++i) vocab[spelled[i]] = int32_t(i);
  ojson merge_list = ojson::array();
  for (const auto& [l, r] : merges) merge_list.push_back(spelled[l] + " " + spelled[r]);

  ojson model{{"type", "BPE"},
              {"dropout", nullptr},
              {"unk_token", nullptr},
              {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr},
              {"fuse_unk", false},
              {"byte_fallback", false},
              {"vocab", std::move(vocab)},
              {"merges", std::move(merge_list)}};
  ojson doc{{"version", "1.0"},
            {"truncation", nullptr},
            {"padding", nullptr},
            {"added_tokens", std::move(added)},
            {"normalizer", {{"type", "Sequence"}, {"normalizers", ojson::array()}}},
            {"pre_tokenizer", pre_tokenizer_spec()},
            {"post_processor", byte_level(true, false)},
            {"decoder", byte_level(true, true)},
            {"model", std::move(model)}};
  return doc.dump(2) + "\n";
}

std::string TrainedBpe::tokenizer_config_json() const {
  auto token = [](const std::string& content) {
    return ojson{{"__type", "AddedToken"}, {"content", content}, {"lstrip", false},
                 {"normalized", true},     {"rstrip", false},    {"single_word", false}};
  };
  const std::string& bos = bpe_special_tokens()[0];
  const std::string& eos = bpe_special_tokens()[1];
  ojson cfg{{"add_bos_token", true},
            {"add_eos_token", false},
            {"bos_token", token(bos)},
            {"clean_up_tokenization_spaces", false},
            {"eos_token", token(eos)},
            {"legacy", true},
            {"model_max_length", model_max_length},
            {"pad_token", token(eos)},
            {"sp_model_kwargs", ojson::object()},
            {"unk_token", nullptr},
            {"tokenizer_class", "LlamaTokenizerFast"},
            {"chat_template", chat_template}};
  return cfg.dump(2) + "\n";
}

void TrainedBpe::save(const std::string& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) fail("cannot create {}: {}", dir, ec.message());
  auto write = [&](const char* name, const std::string& text) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    std::ofstream f(path, std::ios::binary);
    f << text;
    if (!f.flush()) fail("cannot write {}", path);
  };
  write("tokenizer.json", tokenizer_json());
  write("tokenizer_config.json", tokenizer_config_json());
}

}  // namespace fathom
