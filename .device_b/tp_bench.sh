#!/usr/bin/env bash
# Tensor-parallel scaling on the GPUs of one host, over binaries staged by bench/stage_gpu.sh
# (decode_bench, prompt_bench, make_random_model; nothing is built here). For TP = 1, 2, 4, 8
# (those the host has GPUs for, or TP_SIZES), on a random Pixtral-12B folder with vision:
#   - decode at batch 1 and 64 (DECODE_BATCHES) after CONTEXT (default 1000) prompt tokens:
#     median ms per step;
#   - the image prompt's decoder prefill (one 1024x1024 image and 50 text tokens, 4213 tokens):
#     median ms;
# each with the speed-up against TP=1 and the time the step's 2 x 40 all-reduces take on their own
# (an upper bound on what they add to the step while nothing overlaps them). Sequence 0's greedy
# tokens are compared with TP=1's (bf16 rounding may move a pick whose top-2 margin is tiny).
#   bench/tp_bench.sh [STAGED_DIR]      # default .device; the table goes to stdout and $OUT
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.device}"
source bench/nccl_library_path.sh
export LD_LIBRARY_PATH="$PWD/$dir/lib:/usr/local/cuda/lib64$nccl_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$dir/bin/decode_bench" | grep -q 'not found'; then
  echo "missing shared libraries:"; ldd "$dir/bin/decode_bench" | grep 'not found'; exit 1
fi
gpus=$(nvidia-smi -L | wc -l)
sizes="${TP_SIZES:-1 2 4 8}"
batches="${DECODE_BATCHES:-1 64}"
context="${CONTEXT:-1000}"
model="${MODEL:-/tmp/pixtral-12b}"
if [ ! -f "$model/params.json" ]; then
  "$dir/bin/make_random_model" --out "$model" --preset pixtral-12b --vision=true || exit 1
fi
log=$(mktemp -d)
status=0
for tp in $sizes; do
  if [ "$tp" -gt "$gpus" ]; then echo "== tp $tp: skipped, $gpus GPUs"; continue; fi
  for batch in $batches; do
    echo "== decode_bench --tp $tp --batch $batch"
    "$dir/bin/decode_bench" --model "$model" --backend cuda --tp "$tp" --batch "$batch" \
      --prompt_tokens "$context" --steps 32 2>&1 | tee "$log/decode-$tp-$batch.txt" |
      grep -E '^(load|decode|all-reduce|sequence 0)' || status=1
  done
  echo "== prompt_bench --tp $tp (1 x 1024x1024 image)"
  "$dir/bin/prompt_bench" --model "$model" --backend cuda --tp "$tp" --images 1 \
    --image_sizes 1024 --ttft=false --repeats 5 2>&1 | tee "$log/prompt-$tp.txt" |
    grep -E '^(load|prefill|all-reduce|vision)' || status=1
done

# The figures, by file: a median, an all-reduce time, greedy tokens.
median() { sed -n 's/.*median \([0-9.]*\) ms.*/\1/p' "$1" | head -1; }
prefill() { sed -n 's/^prefill (decoder only).*median \([0-9.]*\) ms.*/\1/p' "$1" | head -1; }
allreduce() { sed -n 's/^all-reduce, tp [0-9]*: \([0-9.]*\) ms.*/\1/p' "$1" | head -1; }
tokens() { sed -n 's/^sequence 0 tokens: //p' "$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2fx", a / b; else print "-" }'; }
{
  echo
  echo "| TP | case | ms | speed-up vs TP=1 | all-reduce alone, ms | greedy tokens as TP=1 |"
  echo "|---|---|---|---|---|---|"
  for tp in $sizes; do
    [ "$tp" -gt "$gpus" ] && continue
    for batch in $batches; do
      f="$log/decode-$tp-$batch.txt" base="$log/decode-1-$batch.txt"
      same="-"
      if [ -f "$base" ] && [ -n "$(tokens "$f")" ]; then
        [ "$(tokens "$f")" = "$(tokens "$base")" ] && same=yes || same=no
      fi
      echo "| $tp | decode, batch $batch (ms/step) | $(median "$f") | $(ratio "$(median "$base" 2>/dev/null)" "$(median "$f")") | $(allreduce "$f") | $same |"
    done
    f="$log/prompt-$tp.txt" base="$log/prompt-1.txt"
    echo "| $tp | image-prompt prefill, 4213 tokens (ms) | $(prefill "$f") | $(ratio "$(prefill "$base" 2>/dev/null)" "$(prefill "$f")") | $(allreduce "$f") | - |"
  done
} | tee "$log/table.md"
if [ -n "${OUT:-}" ]; then cp "$log"/*.txt "$log/table.md" "$OUT/" 2>/dev/null; fi
exit $status
