#pragma once
// Writing what training produces: a model directory in the HF layout that inference (and
// transformers) load as they load any checkpoint, and the full training state that --resume
// continues from bit for bit. Both are written into `<dir>.tmp` and renamed into place, so a
// run killed while saving leaves the previous good directory (or `<dir>.old` during the swap).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "model/roles.h"
#include "train/optim.h"
#include "train/param.h"

namespace fathom::train {

struct SaveOpts {
  std::string dir;
  nlohmann::json config;         // config.json as it is to be written; torch_dtype is set from `dtype`
  std::vector<Param*> params;    // by checkpoint name; written in the order of weight_table(config)
  DType dtype = DType::BF16;     // BF16 (round-to-nearest-even) or F32; the router's score bias stays F32
  uint64_t shard_bytes = uint64_t(2) << 30;  // largest shard; more than one adds model.safetensors.index.json
  std::string tokenizer_dir;     // tokenizer files copied from here; empty: none
  // Tensors of the table with no Param (DeepSeek's MTP layers hold their own copies of
  // embed_tokens and the lm_head: roles MtpEmbed, MtpHead): their fp32 data, spec.shape
  // values, or null when there is none. A missing tensor the table marks optional is left
  // out; any other is an error.
  std::function<const float*(const WeightSpec&)> lookup;
};

// Writes config.json, generation_config.json, the safetensors (one file or shards plus the
// index) and the tokenizer files. Every Param must be a tensor of the table, with its shape.
// Returns the tensor bytes written.
uint64_t save_model(const SaveOpts& o);

// The tokenizer files a model directory carries, copied when present in the source.
inline constexpr const char* kTokenizerFiles[] = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
                                                  "special_tokens_map.json"};

// Where a run stands, beyond the weights and the optimizer: what --resume needs to carry on
// as if never stopped.
struct TrainState {
  uint64_t data_pos = 0;   // next position in the training data
  uint64_t rng_seed = 0;   // the run's seed
  uint64_t rng_state = 0;  // generator state after the last step
  nlohmann::json extra = nlohmann::json::object();  // the caller's own (schedule, epoch, ...)
};

// Writes every parameter of opt.params() (the non-trainable ones too) in fp32, the AdamW
// moments of the trainable ones, the optimizer's step count and `s` to `dir`:
//   params.safetensors     <name>                     [shape] F32
//   optimizer.safetensors  exp_avg/<name>, exp_avg_sq/<name>
//   train_state.json       step, data position, rng, extra
void save_train_state(const std::string& dir, const AdamW& opt, const TrainState& s);

// Reads them back into opt.params() and opt's moments and step count. The directory must hold
// exactly the same parameter names and shapes (and the same trainable ones); any difference is
// an Error naming the tensor.
TrainState load_train_state(const std::string& dir, AdamW& opt);

// Builds a directory through `write(tmp)` into `<dir>.tmp`, then renames it to `dir`,
// replacing what was there only once the new one is whole.
void write_dir_atomically(const std::string& dir, const std::function<void(const std::string& tmp)>& write);

}  // namespace fathom::train
