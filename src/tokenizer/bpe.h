#pragma once
// The BPE model: vocabulary, merge ranks, and the per-word merge loop with a bounded,
// thread-safe cache of results.
#include <array>
#include <cstdint>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenizer.h"

namespace fathom {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept;
};
using Vocab = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class Bpe {
 public:
  explicit Bpe(const nlohmann::json& model);

  const Vocab& vocab() const { return vocab_; }
  std::optional<int32_t> find(std::string_view token) const;
  // Appends the ids of one pre-token.
  void encode(const Piece& piece, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank, id;
  };
  void merge_word(std::vector<int32_t>& ids, std::vector<int32_t>& out) const;
  void encode_uncached(const Piece& piece, std::vector<int32_t>& out) const;
  int32_t unknown(std::string_view what) const;

  Vocab vocab_;
  Vocab raw_vocab_;  // byte-level tokens keyed by the raw bytes they stand for
  std::unordered_map<uint64_t, Merge> merges_;
  std::array<int32_t, 256> byte_ids_{};  // -1 where the mapped byte is not in the vocab
  std::optional<int32_t> unk_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  // Sharded so that concurrent encodes rarely contend; each shard is cleared when full.
  static constexpr size_t kShards = 16, kShardCapacity = 4096, kMaxCachedLen = 256;
  struct Shard {
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };
  // Byte-level and plain pieces never share a cache: index 1 is for byte-level pieces.
  mutable std::array<std::array<Shard, kShards>, 2> cache_;
};

}  // namespace fathom
