#pragma once
// What a GGUF file says about the model and its tokenizer, in the shapes fathom already reads:
// a ModelConfig (as config.json would give it), a tokenizer.json document and the
// tokenizer_config.json fields (chat template, special tokens).
#include <string>

#include <nlohmann/json.hpp>

#include "io/config.h"
#include "io/gguf.h"

namespace fathom {

// A path that names a GGUF file (by its extension) rather than a checkpoint directory.
bool is_gguf_path(const std::string& path);

// The config.json fields the GGUF metadata and tensor list imply (architectures deepseek2,
// qwen2 and llama). Keys follow `{arch}.*`; a required key that is missing is an Error.
nlohmann::json gguf_config_json(const GgufModel& m);
// gguf_config_json parsed, plus what config.json cannot say: Llama-3's `rope_freqs` divisors.
ModelConfig gguf_model_config(const GgufModel& m);

// tokenizer.json for `tokenizer.ggml.model = gpt2` (byte-level BPE), with the pre-tokenizer
// named by `tokenizer.ggml.pre` (an unknown name is an Error).
std::string gguf_tokenizer_json(const GgufMetadata& md);
// tokenizer_config.json fields: chat_template, bos_token, eos_token, pad_token (token texts),
// add_bos_token.
nlohmann::json gguf_tokenizer_config(const GgufMetadata& md);

}  // namespace fathom
