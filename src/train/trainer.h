#pragma once
// A training run: data (a text/JSONL file, or one fixed batch of ids), the model, AdamW
// with its schedule and clipping, the V3 objective and router-bias rule, validation,
// periodic checkpoints with the optimizer state, and the metrics log; data-parallel over
// MPI ranks. The CLI (`fathom train`) only fills TrainOpts.
#include <cstdint>
#include <string>

#include "train/dist.h"
#include "train/model.h"
#include "train/optim.h"

namespace fathom::train {

struct TrainOpts {
  // Where the model comes from: an HF checkpoint, or a config.json for a fresh model.
  std::string model;
  std::string config;
  std::string tokenizer;  // tokenizer files (default: the model directory)
  uint64_t seed = 0;

  // Data: a text/JSONL file, or a safetensors ids file (input_ids I64 [B, T]) trained on as
  // one fixed batch every step.
  std::string data, ids_file;
  int64_t seq_len = 256;
  int64_t batch = 8;   // sequences per optimizer step, over every rank and micro-batch
  int64_t accum = 1;   // micro-batches per step on each rank (gradient accumulation)
  double val_frac = 0.05;
  int64_t val_every = 0;  // steps between validation losses (0: only at the end)
  bool sft = false;       // chat data only: every line must be a {"messages": ...} example

  // Optimization.
  int64_t steps = 100;
  AdamWConfig adam;
  Schedule schedule;
  double clip = 1.0;  // global gradient-norm clip (0: off)
  Objective objective;
  double bias_update = 0;  // γ of the router-bias rule (0: off)

  // Output.
  std::string out;               // final model (HF layout); checkpoints go to <out>-checkpoints/step-N
  std::string save_dtype = "bf16";
  int64_t save_every = 0;        // steps between checkpoints with optimizer state (0: none)
  std::string resume;            // a checkpoint directory to continue from
  std::string log;               // metrics JSONL
  std::string plot;              // loss curves SVG (default: next to the log)
  bool json = false;             // one JSON object per step on stdout
  int threads = 0;
  // Matmuls with bf16 inputs and fp32 sums (AVX512_BF16 CPUs run them at twice the fp32
  // rate); master weights, optimizer state and every other op stay fp32.
  bool bf16 = false;
};

// Runs the whole job. Rank 0 alone writes files and prints.
void run_training(const TrainOpts& o, const Dist& dist);

}  // namespace fathom::train

namespace fathom::train {
// input_ids (I64 [B, T]) of a safetensors file; other tensors are ignored. Every token but
// the first of each row is a target.
Batch read_ids_file(const std::string& path);
}  // namespace fathom::train
