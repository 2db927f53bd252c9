#pragma once
// Helpers for building small tokenizer.json documents in tests.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace fathom::test {

using json = nlohmann::json;

// GPT-2's byte -> character table, written out from its definition: printable Latin-1
// bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
inline std::string byte_char(int b) {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    int extra = 256;
    for (int i = 0; i < 256; ++i) {
      const bool keep = (i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      const int cp = keep ? i : extra++;
      std::string s;
      if (cp < 0x80) s += static_cast<char>(cp);
      else {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
      }
      t[i] = s;
    }
    return t;
  }();
  return table[b];
}

// The byte-level spelling of raw text.
inline std::string mapped(const std::string& raw) {
  std::string s;
  for (unsigned char c : raw) s += byte_char(c);
  return s;
}

// A byte-level BPE model whose ids 0..255 are the 256 byte tokens; `extra` tokens follow.
inline json byte_level_model(const std::vector<std::string>& extra, const json& merges, bool ignore_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(b)] = b;
  for (size_t i = 0; i < extra.size(); ++i) vocab[extra[i]] = 256 + static_cast<int>(i);
  return {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr},
          {"continuing_subword_prefix", nullptr}, {"end_of_word_suffix", nullptr}, {"fuse_unk", false},
          {"byte_fallback", false}, {"ignore_merges", ignore_merges}, {"vocab", vocab}, {"merges", merges}};
}

inline json byte_level_step() {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
}

inline json doc(json normalizer, json pre_tokenizer, json model, json added = json::array(),
                json decoder = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}) {
  return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
          {"normalizer", normalizer}, {"pre_tokenizer", pre_tokenizer}, {"post_processor", nullptr},
          {"decoder", decoder}, {"model", model}};
}

inline json added_token(int id, const std::string& content, bool special, bool normalized = false,
                        bool lstrip = false, bool rstrip = false, bool single_word = false) {
  return {{"id", id}, {"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
          {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}};
}

// Pre-tokenizes `text` and returns the pieces as text (byte-level pieces in their mapped
// spelling, the form HF shows).
inline std::vector<std::string> pieces(const json& spec, const std::string& text) {
  PreTokenizer pt(spec);
  Workspace ws;
  std::vector<Piece> out;
  pt.run(text, ws, out);
  std::vector<std::string> r;
  for (const Piece& p : out) r.push_back(p.byte_level ? mapped(std::string(p.text)) : std::string(p.text));
  return r;
}

inline const Tokenizer& deepseek() {
  static const Tokenizer tok = Tokenizer::load(std::string(FATHOM_TEST_DATA) + "/tokenizers/deepseek-v3");
  return tok;
}

}  // namespace fathom::test
