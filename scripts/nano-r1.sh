#!/usr/bin/env bash
# nano-R1: a DeepSeek-V3-architecture reasoning model trained by fathom from nothing, on one
# verifiable task (multi-step integer arithmetic, docs/nano-r1-task.md):
#   1. data      problems with their step-by-step traces (pretraining text, SFT chats)
#   2. tokenizer byte-level BPE with DeepSeek-R1's special tokens and a chat template
#   3. pretrain  MLA + DeepSeekMoE (auxiliary-loss-free balancing) + one MTP module
#   4. SFT       a short cold start on R1-format chats
#   5. GRPO      rule rewards (accuracy + format), as in R1-Zero
#   6. eval      held-out problems: after SFT, after GRPO, and after GRPO with thinking forced off
# Usage: scripts/nano-r1.sh [WORK_DIR]   (default: build/nano-r1-work)
# Each stage writes its own directory and is skipped when that exists, so a killed run
# continues from the stage it was in. The same SEED and THREADS give the same model bytes.
# Env: FATHOM (binary, default build/release/fathom), THREADS (default 2), SEED (default 1),
#      SCALE (multiplies every stage's steps; default 1), INSTALL=DIR copies the model, its
#      plots and the results there (the repository's models/nano-r1 is made this way).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(realpath -m "${1:-$root/build/nano-r1-work}")
fathom=${FATHOM:-$root/build/release/fathom}
threads=${THREADS:-2}
seed=${SEED:-1}
scale=${SCALE:-1}
# The data's traces are written as people write worked solutions: half the time, an operation
# whose value feeds the next step is done together with it on one line (docs/nano-r1-task.md).
merge=${MERGE:-0.5}
steps() { awk -v n="$1" -v s="$scale" 'BEGIN { v = int(n * s + 0.5); print (v < 1 ? 1 : v) }'; }
mkdir -p "$work/logs"
log() { printf '[nano-r1 %s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$work/recipe.log" >&2; }
start=$(date +%s)

# Held-out evaluation problems come from a seed no stage trains on.
eval_seed=$((seed * 1000 + 777))

# 1. Data: every stage draws from its own seed.
if [ ! -f "$work/data/done" ]; then
  log "data"
  rm -rf "$work/data" && mkdir -p "$work/data"
  "$fathom" task --kind text --n 200000 --seed $((seed * 1000 + 1)) --merge "$merge" --out "$work/data/pretrain.jsonl"
  "$fathom" task --kind sft --n 20000 --seed $((seed * 1000 + 2)) --merge "$merge" --out "$work/data/sft.jsonl"
  touch "$work/data/done"
fi

# 2. Tokenizer.
if [ ! -d "$work/tokenizer" ]; then
  log "tokenizer"
  "$fathom" tokenizer-train --data "$work/data/pretrain.jsonl" --vocab 512 \
    --chat-template "$root/scripts/nano-r1/chat_template.jinja" --out "$work/tokenizer.tmp"
  mv "$work/tokenizer.tmp" "$work/tokenizer"
fi
# The model's vocabulary is the tokenizer's: its largest id (the last added token) + 1.
vocab=$(( $(grep -o '"id": *[0-9]*' "$work/tokenizer/tokenizer.json" | grep -o '[0-9]*$' | sort -n | tail -1) + 1 ))
sed "s/\"vocab_size\": [0-9]*/\"vocab_size\": $vocab/" "$root/scripts/nano-r1/config.json" > "$work/config.json"

# 3. Pretraining from scratch.
if [ ! -d "$work/base" ]; then
  log "pretrain"
  "$fathom" train --config "$work/config.json" --tokenizer "$work/tokenizer" --data "$work/data/pretrain.jsonl" \
    --seq-len 256 --batch 16 --steps "$(steps 2500)" --lr 2e-3 --warmup "$(steps 100)" --schedule wsd --decay-frac 0.2 \
    --weight-decay 0.1 --mtp-weight 0.3 --bias-update 0.001 --compute bf16 --threads "$threads" --seed "$seed" \
    --val-frac 0.01 --val-every "$(steps 500)" --log "$work/logs/pretrain.jsonl" --save-dtype f32 --out "$work/base"
fi

# 4. SFT cold start: R1-format chats; the loss falls on the assistant's turn only.
if [ ! -d "$work/sft" ]; then
  log "sft"
  "$fathom" train --model "$work/base" --tokenizer "$work/tokenizer" --data "$work/data/sft.jsonl" --sft \
    --seq-len 192 --batch 32 --steps "$(steps ${SFT_STEPS:-30})" --lr 5e-4 --warmup "$(steps 10)" --schedule cosine \
    --weight-decay 0.1 --mtp-weight 0.1 --bias-update 0.001 --compute bf16 --threads "$threads" --seed "$seed" \
    --val-frac 0.02 --val-every "$(steps 50)" --log "$work/logs/sft.jsonl" --save-dtype f32 --out "$work/sft"
fi

# 5. GRPO on fresh problems with the rule rewards.
if [ ! -d "$work/grpo" ]; then
  log "grpo"
  "$fathom" grpo --model "$work/sft" --task-seed $((seed * 1000 + 3)) --difficulty 3-6 \
    --steps "$(steps ${GRPO_STEPS:-400})" --prompts-per-step 16 --group 8 --max-new-tokens 192 --temperature 1.5 \
    --lr 1e-4 --beta 0.04 --mu 1 --drop-equal --compute bf16 --threads "$threads" --seed "$seed" \
    --eval-every "$(steps 50)" --eval-n 200 --eval-seed $((seed * 1000 + 4)) \
    --log "$work/logs/grpo.jsonl" --save-dtype bf16 --out "$work/grpo"
fi

# 6. Held-out evaluation.
if [ ! -f "$work/eval/done" ]; then
  log "eval"
  rm -rf "$work/eval" && mkdir -p "$work/eval"
  ev() { "$fathom" eval --n "${EVAL_N:-500}" --seed "$eval_seed" --threads "$threads" --json "$@"; }
  ev --model "$work/sft" > "$work/eval/sft.json"
  ev --model "$work/grpo" > "$work/eval/grpo.json"
  ev --model "$work/grpo" --no-think > "$work/eval/grpo-no-think.json"
  ev --model "$work/sft" --no-think > "$work/eval/sft-no-think.json"
  touch "$work/eval/done"
fi
for f in sft sft-no-think grpo grpo-no-think; do log "eval $f: $(cat "$work/eval/$f.json")"; done
log "total $(( ($(date +%s) - start) / 60 )) min this run"

# Plots of every stage.
for s in pretrain sft; do
  "$fathom" plot --log "$work/logs/$s.jsonl" --out "$work/logs/$s.svg" --keys loss,loss_main,loss_mtp,val_loss >/dev/null
done
"$fathom" plot --log "$work/logs/grpo.jsonl" --out "$work/logs/grpo.svg" \
  --keys reward,accuracy,eval_accuracy,completion_tokens,kl,entropy,clip_fraction >/dev/null

if [ -n "${INSTALL:-}" ]; then
  dest=$(realpath -m "$INSTALL")
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp/plots" "$dest.tmp/results"
  cp "$work/grpo"/{config.json,generation_config.json,model.safetensors,tokenizer.json,tokenizer_config.json} "$dest.tmp/"
  cp "$work/logs"/*.svg "$dest.tmp/plots/"
  cp "$work/eval"/*.json "$dest.tmp/results/"
  [ -f "$dest/README.md" ] && cp "$dest/README.md" "$dest.tmp/"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  log "installed in $dest"
fi
