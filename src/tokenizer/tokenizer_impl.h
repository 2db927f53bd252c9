#pragma once
// Internal state of a Tokenizer, shared by the encode and decode sides.
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"

namespace fathom {

struct Tokenizer::Impl {
  Normalizer normalizer;
  PreTokenizer pre_tokenizer;
  Bpe model;
  AddedMatcher raw_added;         // added tokens matched on the text as given
  AddedMatcher normalized_added;  // added tokens matched after normalization

  std::unordered_map<std::string, int32_t> added_ids;  // content -> id
  std::vector<std::string> id_text;   // raw token text by id
  std::vector<std::string> id_bytes;  // what the decoder turns each id into
  std::vector<uint8_t> id_known, id_special;
  bool byte_level_decoder = false;    // false: tokens are joined with spaces
  std::optional<int32_t> bos, eos;

  explicit Impl(const nlohmann::json& doc);  // tokenizer.cpp

  bool known(int32_t id) const { return id >= 0 && static_cast<size_t>(id) < id_known.size() && id_known[id]; }
};

}  // namespace fathom
