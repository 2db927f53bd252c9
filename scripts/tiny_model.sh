#!/usr/bin/env bash
# Writes a tiny random-weight DeepSeek-V3 (2 layers, hidden 64, the full 129,280-token
# vocabulary) with the real DeepSeek-V3 tokenizer and chat template, so fathom can be tried
# without downloading a checkpoint: the replies are gibberish, but every stage runs
# (tokenizer, template, MLA, MoE, sampling, streaming, the server).
# Usage: scripts/tiny_model.sh [OUT_DIR]   (default: build/tiny-v3; kept if it already exists)
# FATHOM=path/to/fathom picks the binary (default: build/release/fathom).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath -m "${1:-$root/build/tiny-v3}")
fathom=${FATHOM:-$root/build/release/fathom}
[ -f "$out/tokenizer.json" ] && exit 0
# Built aside and renamed, so an interrupted run never leaves a half-written model behind.
tmp="$out.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
if ! log=$("$fathom" init-random --config "$root/tests/server/tiny-v3-full.config.json" --out "$tmp" 2>&1); then
  echo "$log" >&2
  exit 1
fi
cp "$root"/tests/data/tokenizers/deepseek-v3/tokenizer{,_config}.json "$tmp/"
rm -rf "$out"
mv "$tmp" "$out"
echo "wrote $out: a tiny random DeepSeek-V3 with the real tokenizer"
