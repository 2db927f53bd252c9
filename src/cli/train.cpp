// fathom train: pretraining and SFT with DeepSeek-V3's recipe (MTP loss, auxiliary-loss-free
// balancing, sequence-wise balance loss), on one process or many under mpirun.
#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "train/dist.h"
#include "train/trainer.h"

namespace fathom::cli {

void add_train(CLI::App& app) {
  auto o = std::make_shared<train::TrainOpts>();
  auto sched = std::make_shared<std::string>("constant");
  auto* sub = app.add_subcommand("train", "train a model (pretraining or SFT) with DeepSeek-V3's objective; runs under mpirun too");
  auto* src = sub->add_option_group("model", "where the model comes from");
  src->add_option("--model", o->model, "HF-layout checkpoint directory to start from")->check(CLI::ExistingDirectory);
  src->add_option("--config", o->config, "config.json of a fresh model, initialized as HF does")->check(CLI::ExistingFile);
  add_tokenizer_option(sub, o->tokenizer);
  sub->add_option("--seed", o->seed, "seed of the initialization and the data order");
  sub->add_option("--data", o->data, "text (one document per line) or JSONL ({\"text\"} documents, {\"messages\"} chat examples)")
      ->check(CLI::ExistingFile);
  sub->add_option("--ids-file", o->ids_file, "safetensors with input_ids (I64 [B, T]): train on that one batch every step")
      ->check(CLI::ExistingFile);
  sub->add_flag("--sft", o->sft, "chat SFT: the data is JSONL; {\"messages\": [...]} examples count only the assistant's tokens");
  sub->add_option("--seq-len", o->seq_len, "tokens per training sequence")->check(at_least(2));
  sub->add_option("--batch", o->batch, "sequences per optimizer step, over every rank and micro-batch")->check(at_least(1));
  sub->add_option("--accum", o->accum, "micro-batches per step on each rank (gradient accumulation)")->check(at_least(1));
  sub->add_option("--val-frac", o->val_frac, "share of the documents held out for the validation loss")->check(in_range(0, 0.5));
  sub->add_option("--val-every", o->val_every, "steps between validation losses (0: at the end only)")->check(at_least(0));
  sub->add_option("--steps", o->steps, "optimizer steps")->check(at_least(1));
  sub->add_option("--lr", o->adam.lr, "peak learning rate")->check(at_least(0));
  sub->add_option("--beta1", o->adam.beta1, "AdamW β1")->check(in_range(0, 0.999999));
  sub->add_option("--beta2", o->adam.beta2, "AdamW β2")->check(in_range(0, 0.999999));
  sub->add_option("--eps", o->adam.eps, "AdamW ε")->check(at_least(0));
  sub->add_option("--weight-decay", o->adam.weight_decay, "AdamW decoupled weight decay (tensors with 2 or more dims)")->check(at_least(0));
  sub->add_option("--schedule", *sched, "learning-rate schedule after warmup: constant, cosine or wsd (warmup-stable-decay)")
      ->check(CLI::IsMember({"constant", "cosine", "wsd"}));
  sub->add_option("--warmup", o->schedule.warmup, "linear warmup steps (0: full lr from the first step)")->check(at_least(0));
  sub->add_option("--min-lr-ratio", o->schedule.min_lr_ratio, "cosine and wsd end at this fraction of the lr")->check(in_range(0, 1));
  sub->add_option("--decay-frac", o->schedule.decay_frac, "wsd: share of the steps spent decaying")->check(in_range(0, 1));
  sub->add_option("--clip", o->clip, "global gradient-norm clip (0: off)")->check(at_least(0));
  sub->add_option("--mtp-weight", o->objective.mtp_weight, "λ: weight of the multi-token-prediction loss (V3: 0.3, then 0.1)")->check(at_least(0));
  sub->add_option("--balance-alpha", o->objective.balance_alpha, "α of the sequence-wise balance loss (V3: 0.0001)")->check(at_least(0));
  sub->add_option("--bias-update", o->bias_update, "γ of auxiliary-loss-free balancing: router-bias step per optimizer step (V3: 0.001)")
      ->check(at_least(0));
  sub->add_option("--out", o->out, "write the trained model here (HF layout); checkpoints go to OUT-checkpoints/step-N");
  sub->add_option("--save-dtype", o->save_dtype, "dtype of the saved model: bf16 or f32")->check(CLI::IsMember({"bf16", "f32"}));
  sub->add_option("--save-every", o->save_every, "steps between checkpoints with the optimizer state (0: none)")->check(at_least(0));
  sub->add_option("--resume", o->resume, "continue from a checkpoint directory (OUT-checkpoints/step-N)")->check(CLI::ExistingDirectory);
  sub->add_option("--log", o->log, "append per-step metrics to this JSONL file; the loss curves go beside it as .svg");
  sub->add_option("--plot", o->plot, "write the loss curves to this SVG (default: the log's name with .svg)");
  sub->add_flag("--json", o->json, "print one JSON object per step on stdout");
  sub->add_option("--threads", o->threads, "threads per process (default: all cores)")->check(at_least(0));
  auto compute = std::make_shared<std::string>("f32");
  sub->add_option("--compute", *compute,
                  "matmul precision: f32, or bf16 (bf16 inputs, fp32 sums: twice as fast on AVX512_BF16 CPUs; "
                  "weights and optimizer stay fp32)")
      ->check(CLI::IsMember({"f32", "bf16"}));
  sub->callback([o, sched, compute] {
    o->schedule.kind = train::parse_schedule_kind(*sched);
    o->bf16 = *compute == "bf16";
    train::Dist dist;
    train::run_training(*o, dist);
  });
}

}  // namespace fathom::cli
