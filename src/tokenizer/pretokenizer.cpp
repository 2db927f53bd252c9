#include "tokenizer/pretokenizer.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fathom {
namespace {

using json = nlohmann::json;

// GPT-2's pre-tokenization pattern, used by ByteLevel when use_regex is set.
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct ByteTable {
  char32_t map[256];
  ByteTable() {
    // Printable Latin-1 bytes stand for themselves; the rest are moved to 256 and up.
    char32_t extra = 256;
    for (int b = 0; b < 256; ++b) {
      const bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      map[b] = keep ? static_cast<char32_t>(b) : extra++;
    }
  }
};
const ByteTable kByteTable;

std::string type_of(const json& spec, const char* what) {
  if (!spec.is_object() || !spec.contains("type") || !spec["type"].is_string())
    fail("tokenizer.json: {} has no \"type\"", what);
  return spec["type"].get<std::string>();
}

bool flag(const json& spec, const char* key, bool dflt) {
  auto it = spec.find(key);
  if (it == spec.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) fail("tokenizer.json: \"{}\" must be true or false", key);
  return it->get<bool>();
}

SplitBehavior parse_behavior(const json& spec) {
  auto it = spec.find("behavior");
  if (it == spec.end() || !it->is_string()) fail("tokenizer.json: Split has no \"behavior\"");
  const std::string b = it->get<std::string>();
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  fail("tokenizer.json: unknown Split behavior '{}'", b);
}

// Spans of a per-character predicate: every matching character is its own match.
template <typename Pred>
void char_spans(std::string_view text, Pred pred, std::vector<Span>& out) {
  if (text.empty()) {
    out.push_back({0, 0, false});
    return;
  }
  size_t last = 0, i = 0;
  while (i < text.size()) {
    const size_t b = i;
    const char32_t c = utf8::next(text, i);
    if (pred(c)) {
      if (last < b) out.push_back({last, b, false});
      out.push_back({b, i, true});
      last = i;
    }
  }
  if (last < text.size()) out.push_back({last, text.size(), false});
}

}  // namespace

// ---- normalizers ----

Normalizer::Normalizer(const json& spec) {
  if (spec.is_null()) return;
  const std::string t = type_of(spec, "normalizer");
  if (t == "Sequence") {
    auto it = spec.find("normalizers");
    if (it == spec.end() || !it->is_array()) fail("tokenizer.json: Sequence normalizer has no \"normalizers\" list");
    for (const json& n : *it) {
      Normalizer inner(n);
      forms_.insert(forms_.end(), inner.forms_.begin(), inner.forms_.end());
    }
  } else if (t == "NFC") {
    forms_.push_back(utf8::NormForm::NFC);
  } else if (t == "NFD") {
    forms_.push_back(utf8::NormForm::NFD);
  } else if (t == "NFKC") {
    forms_.push_back(utf8::NormForm::NFKC);
  } else if (t == "NFKD") {
    forms_.push_back(utf8::NormForm::NFKD);
  } else {
    fail("tokenizer.json: normalizer '{}' is not supported", t);
  }
}

std::string Normalizer::apply(std::string_view s) const {
  std::string cur(s);
  for (utf8::NormForm f : forms_) cur = utf8::normalize(cur, f);
  return cur;
}

// ---- pre-tokenizers ----

struct PreTokenizer::Stage {
  enum Kind { Split, Digits, ByteLevel } kind = Split;
  std::unique_ptr<Regex> regex;  // Split's pattern, or ByteLevel's GPT-2 pattern
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  bool add_prefix_space = false;
};

PreTokenizer::PreTokenizer(const json& spec) {
  if (!spec.is_null()) add_stages(spec);
}
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

const char32_t* PreTokenizer::byte_to_char() { return kByteTable.map; }

void PreTokenizer::add_stages(const json& spec) {
  const std::string t = type_of(spec, "pre_tokenizer");
  if (t == "Sequence") {
    auto it = spec.find("pretokenizers");
    if (it == spec.end() || !it->is_array()) fail("tokenizer.json: Sequence pre_tokenizer has no \"pretokenizers\" list");
    for (const json& p : *it) add_stages(p);
  } else if (t == "Split") {
    Stage s;
    s.kind = Stage::Split;
    auto pat = spec.find("pattern");
    if (pat == spec.end() || !pat->is_object()) fail("tokenizer.json: Split has no \"pattern\"");
    if (pat->contains("Regex") && (*pat)["Regex"].is_string()) {
      s.regex = std::make_unique<Regex>((*pat)["Regex"].get<std::string>());
    } else if (pat->contains("String") && (*pat)["String"].is_string()) {
      s.regex = std::make_unique<Regex>(regex_escape((*pat)["String"].get<std::string>()));
    } else {
      fail("tokenizer.json: Split pattern must be {{\"Regex\": ...}} or {{\"String\": ...}}");
    }
    s.behavior = parse_behavior(spec);
    s.invert = flag(spec, "invert", false);
    stages_.push_back(std::move(s));
  } else if (t == "Digits") {
    Stage s;
    s.kind = Stage::Digits;
    s.behavior = flag(spec, "individual_digits", false) ? SplitBehavior::Isolated : SplitBehavior::Contiguous;
    stages_.push_back(std::move(s));
  } else if (t == "ByteLevel") {
    Stage s;
    s.kind = Stage::ByteLevel;
    s.add_prefix_space = flag(spec, "add_prefix_space", true);
    if (flag(spec, "use_regex", true)) s.regex = std::make_unique<Regex>(kGpt2Pattern);
    stages_.push_back(std::move(s));
  } else {
    fail("tokenizer.json: pre_tokenizer '{}' is not supported", t);
  }
}

void apply_behavior(const std::vector<Span>& spans, SplitBehavior behavior, std::vector<Span>& out) {
  bool prev_match = false;
  switch (behavior) {
    case SplitBehavior::Isolated:
      for (const Span& s : spans) out.push_back({s.begin, s.end, false});
      return;
    case SplitBehavior::Removed:
      out.insert(out.end(), spans.begin(), spans.end());
      return;
    case SplitBehavior::Contiguous: {
      const size_t base = out.size();
      for (const Span& s : spans) {
        if (s.match == prev_match && out.size() > base) out.back().end = s.end;
        else out.push_back({s.begin, s.end, false});
        prev_match = s.match;
      }
      return;
    }
    case SplitBehavior::MergedWithPrevious: {
      const size_t base = out.size();
      for (const Span& s : spans) {
        if (s.match && !prev_match && out.size() > base) out.back().end = s.end;
        else out.push_back({s.begin, s.end, false});
        prev_match = s.match;
      }
      return;
    }
    case SplitBehavior::MergedWithNext: {
      // Walk backwards: a match joins the piece that follows it.
      const size_t base = out.size();
      for (size_t k = spans.size(); k-- > 0;) {
        const Span& s = spans[k];
        if (s.match && !prev_match && out.size() > base) out.back().begin = s.begin;
        else out.push_back({s.begin, s.end, false});
        prev_match = s.match;
      }
      std::reverse(out.begin() + static_cast<std::ptrdiff_t>(base), out.end());
      return;
    }
  }
}

namespace {

// The mapped form of a byte-level piece, for stages that must see the mapped characters.
std::string map_bytes(std::string_view raw) {
  std::string s;
  s.reserve(raw.size() * 2);
  for (char c : raw) utf8::append(s, kByteTable.map[static_cast<uint8_t>(c)]);
  return s;
}

}  // namespace

void PreTokenizer::run(std::string_view text, Workspace& ws, std::vector<Piece>& out) const {
  std::vector<Piece>& cur = ws.a;
  std::vector<Piece>& nxt = ws.b;
  cur.clear();
  cur.push_back({text, false});
  for (const Stage& st : stages_) {
    nxt.clear();
    for (Piece p : cur) {
      if (p.byte_level) p = {ws.keep(map_bytes(p.text)), false};
      if (st.kind == Stage::ByteLevel && st.add_prefix_space && (p.text.empty() || p.text[0] != ' '))
        p.text = ws.keep(" " + std::string(p.text));
      if (st.kind == Stage::ByteLevel && !st.regex) {
        if (!p.text.empty()) nxt.push_back({p.text, true});
        continue;
      }
      ws.spans.clear();
      if (st.kind == Stage::Digits) char_spans(p.text, utf8::is_numeric, ws.spans);
      else st.regex->find_spans(p.text, ws.regex, ws.spans);
      if (st.invert)
        for (Span& s : ws.spans) s.match = !s.match;
      ws.merged.clear();
      apply_behavior(ws.spans, st.behavior, ws.merged);
      const bool byte_level = st.kind == Stage::ByteLevel;
      for (const Span& s : ws.merged)
        if (!s.match && s.end > s.begin) nxt.push_back({p.text.substr(s.begin, s.end - s.begin), byte_level});
    }
    std::swap(cur, nxt);
  }
  for (const Piece& p : cur)
    if (!p.text.empty()) out.push_back(p);
}

}  // namespace fathom
