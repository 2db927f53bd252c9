// fathom grpo: reinforcement learning with GRPO (DeepSeekMath, R1) on rule rewards.
#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "train/grpo.h"

namespace fathom::cli {

void add_grpo(CLI::App& app) {
  auto o = std::make_shared<train::GrpoOpts>();
  auto sched = std::make_shared<std::string>("constant");
  auto norm = std::make_shared<std::string>("seq-mean");
  auto difficulty = std::make_shared<std::string>("mix");
  auto compute = std::make_shared<std::string>("f32");
  auto dr = std::make_shared<bool>(false);
  auto* sub = app.add_subcommand("grpo", "reinforcement learning with GRPO on rule rewards (R1-Zero's recipe)");
  sub->add_option("--model", o->model, "the starting policy (HF layout); also the frozen KL reference")
      ->required()
      ->check(CLI::ExistingDirectory);
  add_tokenizer_option(sub, o->tokenizer);
  sub->add_option("--seed", o->seed, "seed of the sampling (and of the prompt order with --prompts)");
  sub->add_option("--prompts", o->prompts,
                  "JSONL prompts {\"prompt\", \"answer\", ...}; default: nano-R1's arithmetic task")
      ->check(CLI::ExistingFile);
  sub->add_option("--task-seed", o->task_seed, "arithmetic task: the seed of the training problems");
  sub->add_option("--difficulty", *difficulty, "arithmetic task: a level D (1-6), a range A-B, or mix");
  sub->add_option("--prompts-per-step", o->prompts_per_step, "prompts sampled per step (P)")->check(at_least(1));
  sub->add_option("-G,--group", o->group, "completions per prompt (G)")->check(at_least(1));
  sub->add_option("--max-new-tokens", o->max_new_tokens, "longest completion, tokens")->check(at_least(1));
  sub->add_option("--temperature", o->temperature, "sampling temperature; the loss uses the log-probabilities of the same tempered distribution")->check(at_least(0));
  sub->add_option("--top-p", o->top_p, "nucleus sampling mass")->check(in_range(0, 1));
  sub->add_option("--format-weight", o->format_weight, "built-in reward = accuracy + this × format")->check(at_least(0));
  sub->add_option("--reward-cmd", o->reward_cmd.command,
                  "outside reward program (sh -c): one JSON object per completion on stdin, one number per line out");
  sub->add_option("--reward-timeout", o->reward_cmd.timeout_s, "seconds the reward program may take per step")->check(at_least(0));
  sub->add_option("--steps", o->steps, "GRPO steps (sample, score, update)")->check(at_least(1));
  sub->add_option("--mu", o->mu, "μ: policy updates per sampled batch")->check(at_least(1));
  sub->add_option("--micro-batch", o->micro_batch, "completions per forward/backward pass")->check(at_least(1));
  sub->add_option("--lr", o->adam.lr, "peak learning rate")->check(at_least(0));
  sub->add_option("--beta1", o->adam.beta1, "AdamW β1")->check(in_range(0, 0.999999));
  sub->add_option("--beta2", o->adam.beta2, "AdamW β2")->check(in_range(0, 0.999999));
  sub->add_option("--weight-decay", o->adam.weight_decay, "AdamW decoupled weight decay")->check(at_least(0));
  sub->add_option("--schedule", *sched, "learning-rate schedule after warmup: constant, cosine or wsd")
      ->check(CLI::IsMember({"constant", "cosine", "wsd"}));
  sub->add_option("--warmup", o->schedule.warmup, "linear warmup steps")->check(at_least(0));
  sub->add_option("--min-lr-ratio", o->schedule.min_lr_ratio, "cosine and wsd end at this fraction of the lr")->check(in_range(0, 1));
  sub->add_option("--clip", o->clip, "global gradient-norm clip (0: off)")->check(at_least(0));
  sub->add_option("--epsilon", o->loss.clip_low, "ε: the ratio is clipped to [1-ε, 1+ε]")->check(in_range(0, 1));
  sub->add_option("--epsilon-high", o->loss.clip_high, "clip-higher (DAPO): the upper bound's ε (default: --epsilon)")
      ->check(at_least(0));
  sub->add_option("--beta", o->loss.beta, "β: weight of the k3 KL penalty to the reference (0: no reference)")->check(at_least(0));
  sub->add_option("--loss-norm", *norm,
                  "seq-mean (GRPO: each completion's token mean, averaged), token-mean (DAPO), token-sum (Dr. GRPO: / max tokens)")
      ->check(CLI::IsMember({"seq-mean", "token-mean", "token-sum"}));
  sub->add_flag("--no-std", [o](int64_t) { o->scale_std = false; }, "advantages r - mean, without dividing by the std");
  sub->add_flag("--dr-grpo", *dr, "Dr. GRPO: --no-std and --loss-norm token-sum");
  sub->add_flag("--drop-equal", o->drop_equal, "leave out groups whose rewards are all equal (they carry no signal)");
  sub->add_option("--bias-update", o->bias_update, "γ of the router-bias rule during GRPO (0: frozen)")->check(at_least(0));
  sub->add_option("--compute", *compute, "matmul precision of training passes: f32 or bf16")->check(CLI::IsMember({"f32", "bf16"}));
  sub->add_option("--eval-every", o->eval_every, "arithmetic task: held-out accuracy every N steps, at the start and the end (0: off)")
      ->check(at_least(0));
  sub->add_option("--eval-n", o->eval_n, "held-out problems per evaluation")->check(at_least(1));
  sub->add_option("--eval-seed", o->eval_seed, "seed of the held-out problems");
  sub->add_option("--out", o->out, "write the trained model here (HF layout); checkpoints go to OUT-checkpoints/step-N");
  sub->add_option("--save-dtype", o->save_dtype, "dtype of the saved model: bf16 or f32")->check(CLI::IsMember({"bf16", "f32"}));
  sub->add_option("--save-every", o->save_every, "steps between checkpoints with the optimizer state (0: none)")->check(at_least(0));
  sub->add_option("--resume", o->resume, "continue from a checkpoint directory (OUT-checkpoints/step-N)")->check(CLI::ExistingDirectory);
  sub->add_option("--log", o->log, "append per-step metrics to this JSONL file; the plots go beside it as .svg");
  sub->add_flag("--json", o->json, "print one JSON object per step on stdout");
  sub->add_option("--threads", o->threads, "threads (default: all cores)")->check(at_least(0));
  auto* eps_high = sub->get_option("--epsilon-high");
  sub->callback([o, sched, norm, difficulty, compute, dr, eps_high] {
    o->schedule.kind = train::parse_schedule_kind(*sched);
    o->loss.norm = train::parse_loss_norm(*norm);
    o->difficulty = tasks::parse_difficulty(*difficulty);
    o->bf16 = *compute == "bf16";
    if (eps_high->count() == 0) o->loss.clip_high = o->loss.clip_low;
    if (*dr) {
      o->scale_std = false;
      o->loss.norm = train::LossNorm::TokenSum;
    }
    train::run_grpo(*o);
  });
}

}  // namespace fathom::cli
