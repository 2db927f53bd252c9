// libFuzzer target for the tokenizer. The first input byte picks a mode:
//   0: Tokenizer::from_json on the rest (must throw only fathom::Error);
//   1: DeepSeek-V3 encode of the rest; valid UTF-8 must round-trip through decode;
//   2: the rest as token ids; streaming decode must equal full decode;
//   3: the rest as a Split regex in a small tokenizer.json, then encode a fixed text.
// The DeepSeek tokenizer comes from $FATHOM_TOKENIZER_JSON or tests/data.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace {

std::string deepseek_json_path() {
  if (const char* p = std::getenv("FATHOM_TOKENIZER_JSON")) return p;
#ifdef FATHOM_SOURCE_DIR
  std::string root = FATHOM_SOURCE_DIR;
#else
  std::string here = __FILE__;
  std::string root = here.substr(0, here.rfind("/fuzz/"));
#endif
  return root + "/tests/data/tokenizers/deepseek-v3/tokenizer.json";
}

const fathom::Tokenizer& deepseek() {
  static const fathom::Tokenizer t = [] {
    const std::string path = deepseek_json_path();
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) {
      std::fprintf(stderr, "cannot open %s (set FATHOM_TOKENIZER_JSON)\n", path.c_str());
      std::abort();
    }
    std::string s;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    std::fclose(f);
    return fathom::Tokenizer::from_json(s);
  }();
  return t;
}

bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz check failed: %s\n", what);
    std::abort();
  }
}

std::string stream_decode(const fathom::Tokenizer& t, const std::vector<int32_t>& ids, bool skip) {
  fathom::IncrementalDecoder d(t, skip);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  return out + d.flush();
}

void fuzz_split_regex(const std::string& pattern, uint8_t flags) {
  static const char* kBehaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
  nlohmann::json vocab = nlohmann::json::object();
  // Byte-level alphabet: every byte's character, ids 0..255.
  int id = 0, extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    const int cp = keep ? b : extra++;
    std::string s;
    if (cp < 0x80) s += static_cast<char>(cp);
    else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    vocab[s] = id++;
  }
  nlohmann::json doc = {
      {"normalizer", (flags & 8) ? nlohmann::json{{"type", "NFC"}} : nlohmann::json()},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{(flags & 16) ? "String" : "Regex", pattern}}},
           {"behavior", kBehaviors[flags % 5]}, {"invert", (flags & 32) != 0}},
          {{"type", "Digits"}, {"individual_digits", (flags & 64) != 0}},
          {{"type", "ByteLevel"}, {"add_prefix_space", (flags & 128) != 0}, {"use_regex", true}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", nlohmann::json::array()}}}};
  try {
    const fathom::Tokenizer t = fathom::Tokenizer::from_json(doc.dump());
    for (const char* text : {"Hello, world! 123 4567\n\n  x", "中文 テキスト\t\u3000é", "", "aaaa----bbbb"}) {
      const auto ids = t.encode(text);
      // Every split behavior except Removed keeps all the text (unless NFC or a prefix
      // space changes it).
      if (flags % 5 != 0 && !(flags & 8) && !(flags & 128)) check(t.decode(ids) == text, "split lost or changed text");
    }
  } catch (const fathom::Error&) {
    // Bad patterns are reported as errors.
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0] % 4;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (mode) {
    case 0:
      try {
        const fathom::Tokenizer t = fathom::Tokenizer::from_json(rest);
        for (const char* text : {"hello world", "<s> 12 中", ""}) {
          try {
            const auto ids = t.encode(text);
            (void)t.decode(ids, true);
          } catch (const fathom::Error&) {
          }
        }
      } catch (const fathom::Error&) {
      }
      break;
    case 1: {
      const fathom::Tokenizer& t = deepseek();
      std::vector<int32_t> ids;
      try {
        ids = t.encode(rest);
      } catch (const fathom::Error&) {
        check(!valid_utf8(rest), "valid UTF-8 rejected");
        break;
      }
      check(valid_utf8(rest), "invalid UTF-8 accepted");
      const std::string back = t.decode(ids);
      check(back == rest, "decode(encode(s)) != s");
      check(stream_decode(t, ids, false) == back, "streaming decode differs");
      break;
    }
    case 2: {
      const fathom::Tokenizer& t = deepseek();
      std::vector<int32_t> ids;
      for (size_t i = 0; i + 3 <= rest.size(); i += 3) {
        const uint32_t v = static_cast<uint8_t>(rest[i]) | (static_cast<uint8_t>(rest[i + 1]) << 8) |
                           (static_cast<uint32_t>(static_cast<uint8_t>(rest[i + 2])) << 16);
        ids.push_back(static_cast<int32_t>(v % 130000u) - 100);
      }
      const bool skip = size % 2;
      const std::string full = t.decode(ids, skip);
      check(valid_utf8(full), "decode produced invalid UTF-8");
      check(stream_decode(t, ids, skip) == full, "streaming decode differs");
      break;
    }
    case 3:
      if (rest.size() >= 1 && rest.size() < 200 && valid_utf8(rest.substr(1)))
        fuzz_split_regex(rest.substr(1), static_cast<uint8_t>(rest[0]));
      break;
  }
  return 0;
}
