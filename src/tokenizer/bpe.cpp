#include "tokenizer/bpe.h"

#include <nlohmann/json.hpp>
#include <queue>

#include "core/error.h"
#include "tokenizer/unicode.h"

namespace fathom {
namespace {

using json = nlohmann::json;

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Inverse of the byte-level character table: the raw bytes a token stands for, or nullopt
// when it contains a character outside the table.
std::optional<std::string> unmap_bytes(std::string_view tok) {
  static_assert(sizeof(char32_t) == 4);
  const char32_t* table = PreTokenizer::byte_to_char();
  std::string raw;
  size_t i = 0;
  while (i < tok.size()) {
    const char32_t c = utf8::next(tok, i);
    int byte = -1;
    if (c < 256 && table[c] == c) byte = static_cast<int>(c);
    else if (c >= 256 && c < 256 + 68)
      for (int b = 0; b < 256; ++b)
        if (table[b] == c) byte = b;
    if (byte < 0) return std::nullopt;
    raw += static_cast<char>(byte);
  }
  return raw;
}

}  // namespace

size_t StringHash::operator()(std::string_view s) const noexcept {
  // FNV-1a: short keys dominate, where it beats std::hash's setup cost.
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  return h;
}

Bpe::Bpe(const json& model) {
  if (!model.is_object()) fail("tokenizer.json: \"model\" must be an object");
  if (model.contains("type") && model["type"] != "BPE")
    fail("tokenizer.json: model type '{}' is not supported (only BPE)", model["type"].dump());
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object()) fail("tokenizer.json: model has no \"vocab\" object");
  vocab_.reserve(vit->size());
  for (auto it = vit->begin(); it != vit->end(); ++it) {
    if (!it.value().is_number_integer()) fail("tokenizer.json: vocab entry '{}' has no integer id", it.key());
    const auto id = it.value().get<int64_t>();
    if (id < 0 || id > INT32_MAX - 1) fail("tokenizer.json: vocab id {} of '{}' is out of range", id, it.key());
    if (utf8::find_invalid(it.key()) != std::string::npos) fail("tokenizer.json: vocab entry is not UTF-8");
    vocab_.emplace(it.key(), static_cast<int32_t>(id));
  }
  for (const auto& [tok, id] : vocab_)
    if (auto raw = unmap_bytes(tok)) raw_vocab_.emplace(std::move(*raw), id);

  auto not_null = [&](const char* k) { return model.contains(k) && !model[k].is_null(); };
  if (not_null("continuing_subword_prefix") && model["continuing_subword_prefix"] != "")
    fail("tokenizer.json: BPE continuing_subword_prefix is not supported");
  if (not_null("end_of_word_suffix") && model["end_of_word_suffix"] != "")
    fail("tokenizer.json: BPE end_of_word_suffix is not supported");
  if (not_null("dropout") && model["dropout"] != 0.0) fail("tokenizer.json: BPE dropout is not supported");
  if (not_null("byte_fallback") && model["byte_fallback"] == true)
    fail("tokenizer.json: BPE byte_fallback is not supported");
  if (not_null("unk_token")) {
    if (!model["unk_token"].is_string()) fail("tokenizer.json: unk_token must be a string");
    const std::string u = model["unk_token"].get<std::string>();
    auto it = vocab_.find(u);
    if (it == vocab_.end()) fail("tokenizer.json: unk_token '{}' is not in the vocab", u);
    unk_ = it->second;
  }
  fuse_unk_ = model.value("fuse_unk", false);
  ignore_merges_ = model.contains("ignore_merges") && model["ignore_merges"] == true;

  auto mit = model.find("merges");
  if (mit != model.end() && !mit->is_null()) {
    if (!mit->is_array()) fail("tokenizer.json: \"merges\" must be a list");
    merges_.reserve(mit->size());
    int32_t rank = 0;
    for (const json& m : *mit) {
      std::string a, b;
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          fail("tokenizer.json: merge {} ('{}') is not two tokens separated by one space", rank + 1, s);
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        fail("tokenizer.json: merge {} must be \"a b\" or [\"a\", \"b\"]", rank + 1);
      }
      auto ia = vocab_.find(a), ib = vocab_.find(b), iab = vocab_.find(a + b);
      if (ia == vocab_.end() || ib == vocab_.end() || iab == vocab_.end())
        fail("tokenizer.json: merge {} ('{}' + '{}') uses a token missing from the vocab", rank + 1, a, b);
      // A repeated pair keeps its last rank, as a map built in file order would.
      merges_[pair_key(ia->second, ib->second)] = {rank, iab->second};
      ++rank;
    }
  }
  const char32_t* table = PreTokenizer::byte_to_char();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    utf8::append(s, table[b]);
    auto it = vocab_.find(s);
    byte_ids_[b] = it == vocab_.end() ? -1 : it->second;
  }
}

std::optional<int32_t> Bpe::find(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

int32_t Bpe::unknown(std::string_view what) const {
  if (!unk_) fail("tokenizer: '{}' is not in the vocabulary and the model has no unk_token", what);
  return *unk_;
}

void Bpe::merge_word(std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
  // Symbols form a linked list; the queue holds candidate merges, lowest rank first and
  // leftmost among equal ranks. Stale entries are detected when popped.
  const auto n = static_cast<int32_t>(ids.size());
  struct Sym {
    int32_t id, prev, next;
    bool alive;
  };
  struct Cand {
    int32_t rank, pos, id;
    bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<Sym> sym(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  std::vector<Cand> heap_storage;
  heap_storage.reserve(n);
  std::priority_queue<Cand> q(std::less<Cand>(), std::move(heap_storage));
  auto push = [&](int32_t pos) {
    const int32_t nx = sym[pos].next;
    if (nx < 0) return;
    auto it = merges_.find(pair_key(sym[pos].id, sym[nx].id));
    if (it != merges_.end()) q.push({it->second.rank, pos, it->second.id});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!q.empty()) {
    const Cand top = q.top();
    q.pop();
    Sym& s = sym[top.pos];
    if (!s.alive || s.next < 0) continue;
    Sym& r = sym[s.next];
    auto it = merges_.find(pair_key(s.id, r.id));
    if (it == merges_.end() || it->second.id != top.id) continue;
    s.id = top.id;
    r.alive = false;
    s.next = r.next;
    if (s.next >= 0) sym[s.next].prev = top.pos;
    if (s.prev >= 0) push(s.prev);
    push(top.pos);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) out.push_back(sym[i].id);
}

void Bpe::encode_uncached(const Piece& piece, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids;
  ids.reserve(piece.text.size());
  bool prev_unk = false;
  auto add = [&](int32_t id, bool is_unk) {
    if (is_unk && prev_unk && fuse_unk_) return;
    ids.push_back(id);
    prev_unk = is_unk;
  };
  if (piece.byte_level) {
    for (char c : piece.text) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0) add(id, false);
      else add(unknown(fmt::format("byte 0x{:02x}", static_cast<uint8_t>(c))), true);
    }
  } else {
    size_t i = 0;
    while (i < piece.text.size()) {
      const size_t b = i;
      utf8::next(piece.text, i);
      const std::string_view ch = piece.text.substr(b, i - b);
      auto it = vocab_.find(ch);
      if (it != vocab_.end()) add(it->second, false);
      else add(unknown(ch), true);
    }
  }
  merge_word(ids, out);
}

void Bpe::encode(const Piece& piece, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    const Vocab& v = piece.byte_level ? raw_vocab_ : vocab_;
    auto it = v.find(piece.text);
    if (it != v.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (piece.byte_level && piece.text.size() == 1 && byte_ids_[static_cast<uint8_t>(piece.text[0])] >= 0) {
    out.push_back(byte_ids_[static_cast<uint8_t>(piece.text[0])]);
    return;
  }
  if (piece.text.size() > kMaxCachedLen) {
    encode_uncached(piece, out);
    return;
  }
  const size_t h = StringHash{}(piece.text);
  Shard& sh = cache_[piece.byte_level ? 1 : 0][(h >> 7) % kShards];
  {
    std::lock_guard<std::mutex> lock(sh.mu);
    auto it = sh.map.find(piece.text);
    if (it != sh.map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  encode_uncached(piece, out);
  std::vector<int32_t> result(out.begin() + static_cast<std::ptrdiff_t>(start), out.end());
  std::lock_guard<std::mutex> lock(sh.mu);
  if (sh.map.size() >= kShardCapacity) sh.map.clear();
  sh.map.emplace(std::string(piece.text), std::move(result));
}

}  // namespace fathom
