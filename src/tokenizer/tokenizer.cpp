#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/files.h"
#include "io/gguf_config.h"
#include "tokenizer/tokenizer_impl.h"
#include "tokenizer/unicode.h"

namespace fathom {
namespace {

using json = nlohmann::json;

const json& member(const json& doc, const char* key) {
  static const json null_value;
  auto it = doc.find(key);
  return it == doc.end() ? null_value : *it;
}

// Only decoders that leave byte-level output to the ByteLevel step are supported.
bool parse_decoder(const json& spec) {
  if (spec.is_null()) return false;
  if (!spec.is_object() || !spec.contains("type")) fail("tokenizer.json: decoder has no \"type\"");
  const std::string t = spec["type"].is_string() ? spec["type"].get<std::string>() : "";
  if (t == "ByteLevel") return true;
  if (t == "Sequence" && spec.contains("decoders") && spec["decoders"].is_array()) {
    bool any = false;
    for (const json& d : spec["decoders"]) any |= parse_decoder(d);
    return any;
  }
  fail("tokenizer.json: decoder '{}' is not supported", t);
}

// A token named in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  const json& v = member(cfg, key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return std::nullopt;
}

}  // namespace

Tokenizer::Impl::Impl(const json& doc)
    : normalizer(member(doc, "normalizer")), pre_tokenizer(member(doc, "pre_tokenizer")), model(member(doc, "model")) {
  byte_level_decoder = parse_decoder(member(doc, "decoder"));

  std::vector<AddedToken> added;
  const json& at = member(doc, "added_tokens");
  if (!at.is_null() && !at.is_array()) fail("tokenizer.json: \"added_tokens\" must be a list");
  for (const json& t : at.is_array() ? at : json::array()) {
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id") ||
        !t["id"].is_number_integer())
      fail("tokenizer.json: an added token needs \"id\" and \"content\"");
    AddedToken a;
    a.content = t["content"].get<std::string>();
    const auto id = t["id"].get<int64_t>();
    if (id < 0 || id > INT32_MAX - 1) fail("tokenizer.json: added token id {} is out of range", id);
    if (utf8::find_invalid(a.content) != std::string::npos) fail("tokenizer.json: added token is not UTF-8");
    a.id = static_cast<int32_t>(id);
    auto b = [&](const char* k, bool d) {
      auto it = t.find(k);
      return it != t.end() && it->is_boolean() ? it->get<bool>() : d;
    };
    a.special = b("special", false);
    a.lstrip = b("lstrip", false);
    a.rstrip = b("rstrip", false);
    a.normalized = b("normalized", !a.special);
    a.single_word = b("single_word", false);
    if (a.content.empty()) continue;  // HF ignores empty added tokens
    added_ids[a.content] = a.id;
    added.push_back(std::move(a));
  }

  // HF matches special tokens first in its pattern list, then the others, each in file
  // order; with leftmost-longest matching the order only breaks exact duplicates.
  std::vector<AddedToken> raw, norm;
  std::vector<std::string> raw_pat, norm_pat;
  for (int pass = 0; pass < 2; ++pass)
    for (const AddedToken& a : added) {
      if (a.special != (pass == 0)) continue;
      if (a.normalized) {
        norm_pat.push_back(normalizer.apply(a.content));
        norm.push_back(a);
      } else {
        raw_pat.push_back(a.content);
        raw.push_back(a);
      }
    }
  raw_added = AddedMatcher(std::move(raw_pat), std::move(raw));
  normalized_added = AddedMatcher(std::move(norm_pat), std::move(norm));

  int32_t max_id = -1;
  for (const auto& [tok, id] : model.vocab()) max_id = std::max(max_id, id);
  for (const AddedToken& a : added) max_id = std::max(max_id, a.id);
  const size_t n = static_cast<size_t>(max_id + 1);
  id_text.resize(n);
  id_known.assign(n, 0);
  id_special.assign(n, 0);
  for (const auto& [tok, id] : model.vocab()) {
    id_text[id] = tok;
    id_known[id] = 1;
  }
  // An added token's content wins over a vocab entry with the same id, as in HF.
  for (const AddedToken& a : added) {
    id_text[a.id] = a.content;
    id_known[a.id] = 1;
    id_special[a.id] = a.special;
  }

  // The ByteLevel decoder maps a token back to bytes when every character is in its
  // table, and otherwise keeps the token's UTF-8 as is.
  id_bytes.resize(n);
  std::vector<int> char_to_byte(512, -1);
  const char32_t* table = PreTokenizer::byte_to_char();
  for (int b = 0; b < 256; ++b) char_to_byte[table[b]] = b;
  for (size_t id = 0; id < n; ++id) {
    const std::string& t = id_text[id];
    if (!byte_level_decoder) {
      id_bytes[id] = t;
      continue;
    }
    std::string raw_bytes;
    size_t i = 0;
    bool mapped = true;
    while (i < t.size()) {
      const char32_t c = utf8::next(t, i);
      if (c >= 512 || char_to_byte[c] < 0) {
        mapped = false;
        break;
      }
      raw_bytes += static_cast<char>(char_to_byte[c]);
    }
    id_bytes[id] = mapped ? std::move(raw_bytes) : t;
  }
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_json(std::string_view tokenizer_json) {
  json doc;
  try {
    doc = json::parse(tokenizer_json.begin(), tokenizer_json.end());
  } catch (const json::exception& e) {
    fail("tokenizer.json is not valid JSON: {}", e.what());
  }
  if (!doc.is_object()) fail("tokenizer.json must be a JSON object");
  try {
    return Tokenizer(std::make_unique<Impl>(doc));
  } catch (const json::exception& e) {
    fail("tokenizer.json: {}", e.what());
  }
}

Tokenizer Tokenizer::load(const std::string& model_dir) {
  if (is_gguf_path(model_dir)) {
    const GgufModel gguf = GgufModel::open(model_dir);
    const GgufMetadata& md = gguf.metadata();
    Tokenizer t = from_json(gguf_tokenizer_json(md));
    const auto n = uint64_t(t.vocab_size());
    if (md.has("tokenizer.ggml.bos_token_id") && md.get_u64("tokenizer.ggml.bos_token_id") < n)
      t.impl_->bos = int32_t(md.get_u64("tokenizer.ggml.bos_token_id"));
    if (md.has("tokenizer.ggml.eos_token_id") && md.get_u64("tokenizer.ggml.eos_token_id") < n)
      t.impl_->eos = int32_t(md.get_u64("tokenizer.ggml.eos_token_id"));
    return t;
  }
  const std::string path = model_dir + "/tokenizer.json";
  // The likeliest first error: a checkpoint copied without its tokenizer files.
  if (!std::filesystem::exists(path))
    fail("no tokenizer: {} does not exist. fathom reads the Hugging Face tokenizer.json (and "
         "tokenizer_config.json, with the chat template) from the model directory: copy them from the "
         "model's repository, or pass --tokenizer DIR",
         path);
  Tokenizer t = from_json(read_file(path));
  const std::string cfg_path = model_dir + "/tokenizer_config.json";
  if (std::filesystem::exists(cfg_path)) {
    json cfg;
    try {
      cfg = json::parse(read_file(cfg_path));
    } catch (const json::exception& e) {
      fail("{} is not valid JSON: {}", cfg_path, e.what());
    }
    auto resolve = [&](const char* key) -> std::optional<int32_t> {
      auto name = config_token(cfg, key);
      if (!name) return std::nullopt;
      auto id = t.token_id(*name);
      if (!id) fail("{}: {} '{}' is not a known token", cfg_path, key, *name);
      return id;
    };
    t.impl_->bos = resolve("bos_token");
    t.impl_->eos = resolve("eos_token");
  }
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  const size_t bad = utf8::find_invalid(text);
  if (bad != std::string_view::npos) fail("tokenizer: input is not valid UTF-8 (byte offset {})", bad);
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  Workspace ws;
  std::vector<Segment> raw_segs, norm_segs;
  std::vector<Piece> pieces;
  m.raw_added.split(text, raw_segs);
  for (const Segment& rs : raw_segs) {
    if (rs.id >= 0) {
      ids.push_back(rs.id);
      continue;
    }
    std::string_view seg = text.substr(rs.begin, rs.end - rs.begin);
    if (seg.empty()) continue;
    if (!m.normalizer.identity()) seg = ws.keep(m.normalizer.apply(seg));
    norm_segs.clear();
    m.normalized_added.split(seg, norm_segs);
    for (const Segment& ns : norm_segs) {
      if (ns.id >= 0) {
        ids.push_back(ns.id);
        continue;
      }
      if (ns.end == ns.begin) continue;
      pieces.clear();
      m.pre_tokenizer.run(seg.substr(ns.begin, ns.end - ns.begin), ws, pieces);
      for (const Piece& p : pieces) m.model.encode(p, ids);
    }
    ws.arena.clear();
  }
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  IncrementalDecoder d(*this, skip_special);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  out += d.flush();
  return out;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token) const {
  auto it = impl_->added_ids.find(std::string(token));
  if (it != impl_->added_ids.end()) return it->second;
  return impl_->model.find(token);
}

std::string_view Tokenizer::token_text(int32_t id) const {
  return impl_->known(id) ? std::string_view(impl_->id_text[id]) : std::string_view();
}

bool Tokenizer::is_special(int32_t id) const { return impl_->known(id) && impl_->id_special[id]; }
int32_t Tokenizer::vocab_size() const { return static_cast<int32_t>(impl_->id_text.size()); }
std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }

// ---- incremental decoding ----

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(&tok), skip_special_(skip_special) {}

std::string IncrementalDecoder::push(int32_t id) {
  const Tokenizer::Impl& m = tok_->impl();
  if (!m.known(id) || (skip_special_ && m.id_special[id])) return {};
  std::string out;
  if (!m.byte_level_decoder) {
    // Without a decoder HF joins the tokens with single spaces.
    if (!first_) out += ' ';
    first_ = false;
    out += m.id_bytes[id];
    return out;
  }
  pending_ += m.id_bytes[id];
  // Everything but a trailing, still incomplete character can be emitted now: lossy
  // replacement of what precedes it cannot depend on bytes that come later.
  const size_t used = utf8::append_lossy(out, pending_, /*final=*/false);
  pending_.erase(0, used);
  return out;
}

std::string IncrementalDecoder::flush() {
  std::string out;
  utf8::append_lossy(out, pending_, /*final=*/true);
  pending_.clear();
  return out;
}

}  // namespace fathom
