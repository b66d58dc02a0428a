#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, over binaries built here and staged by
# bench/stage_gpu.sh (carried; nothing is built there): correctness first, then timings. The
# first argument is the staged folder (default .device).
#   TESTS=0        skips the tests and the kernel benchmarks; SANITIZE=1 also runs the CUDA
#                  backend test under compute-sanitizer's memcheck.
#   DECODE=1       writes a random Pixtral-12B decoder folder to /tmp and runs decode_bench at
#                  each of DECODE_BATCHES (default "1 16 64 128 256") after DECODE_CONTEXT
#                  (default 1000) prompt tokens per sequence, and compares sequence 0's greedy
#                  tokens across the batch sizes; COMPARE_GRAPHS=1 also decodes each batch
#                  again with the same kernels launched one by one (no CUDA graphs) in the same
#                  process and compares every token.
#   MODEL_12B=1    the folder with vision too, and the 1024x1024 image prompt (prompt_bench).
#   MATMUL=1       times the decoder's matrix products alone (matmul_bench), with cuBLAS's
#                  default kernels and with the tuned ones.
#   PROFILE_BATCHES="1 16"  ncu's kernel times of one decode step at each batch size;
#   PROFILE_PROMPT=1        of one 1024x1024 image prompt (vision + adapter, prefill).
#   REF=DIR        then runs DIR/compiled_decode.py (the compiled-PyTorch peer) at the same
#                  context, BATCHES from REF_BATCHES (default "1,16,64").
#   HF=DIR         runs DIR/hf_anchors.py (copy and GEMM ceilings, Hugging Face eager on the
#                  image prompt and decode), its JSON into $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.device}"
export LD_LIBRARY_PATH="$PWD/$dir/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$dir"/bin/* | grep -q 'not found'; then
  echo "missing shared libraries:"
  ldd "$dir"/bin/* | grep 'not found' | sort -u
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader
status=0
if [ "${TESTS:-1}" = 1 ]; then
  for test in "$dir"/bin/*_test; do
    echo "== $test"
    "$test" --gtest_brief=1 || status=1
  done
  if [ "${SANITIZE:-0}" = 1 ]; then
    echo "== compute-sanitizer memcheck cuda_backend_test"
    timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 \
      "$dir/bin/cuda_backend_test" --gtest_brief=1 || status=1
  fi
  for bench in "$dir"/bin/convert_bench; do
    echo "== $bench"
    "$bench" || status=1
  done
fi
if [ "${MATMUL:-0}" = 1 ]; then
  echo "== matmul_bench, cuBLAS default kernels"
  PIXTRAL_CUBLAS_DEFAULT=1 "$dir/bin/matmul_bench" || status=1
  echo "== matmul_bench, tuned (cuBLASLt candidates timed per shape)"
  "$dir/bin/matmul_bench" || status=1
fi
model=""
if [ "${MODEL_12B:-0}" = 1 ]; then
  model=/tmp/pixtral-12b
  vision=true
elif [ "${DECODE:-0}" = 1 ]; then
  model=/tmp/pixtral-12b-text
  vision=false
fi
if [ -n "$model" ]; then
  echo "== random Pixtral-12B folder (vision $vision)"
  start=$(date +%s)
  "$dir/bin/make_random_model" --out "$model" --preset pixtral-12b --vision="$vision" || status=1
  echo "random model written in $(($(date +%s) - start)) s"
  context="${DECODE_CONTEXT:-1000}"
  tokens_dir=$(mktemp -d)
  for batch in ${DECODE_BATCHES:-1 16 64 128 256}; do
    echo "== decode_bench, batch $batch, context $context"
    "$dir/bin/decode_bench" --model "$model" --backend cuda --batch "$batch" \
      --prompt_tokens "$context" --compare_graphs="${COMPARE_GRAPHS:-0}" | tee "$tokens_dir/b$batch" | grep -v '^sequence 0 tokens' ||
      status=1
  done
  # Sequence 0 has the same prompt at every batch size: its greedy tokens should agree.
  for file in "$tokens_dir"/b*; do
    echo "sequence 0 greedy tokens at batch ${file##*/b}: $(grep '^sequence 0 tokens' "$file" |
      md5sum | cut -c1-8) ($(grep -o '^sequence 0 tokens:\( [0-9]*\)\{8\}' "$file" | cut -d: -f2))"
  done
fi
for batch in ${PROFILE_BATCHES:-}; do
  [ -n "$model" ] || break
  echo "== ncu, one decode step at batch $batch (kernel, duration ns)"
  csv="${OUT:-/tmp}/ncu_decode_b$batch.csv"
  ncu --clock-control none --profile-from-start off --metrics gpu__time_duration.sum --csv \
    "$dir/bin/decode_bench" --model "$model" --backend cuda --batch "$batch" \
    --prompt_tokens "${DECODE_CONTEXT:-1000}" --warmup_steps 2 --steps 2 --profile_step 2 \
    > "$csv" 2> "${OUT:-/tmp}/ncu_decode_b$batch.log" || status=1
  python3 bench/ncu_summary.py "$csv"
done
if [ "${MODEL_12B:-0}" = 1 ]; then
  if [ "${PROFILE_PROMPT:-0}" = 1 ]; then
    echo "== ncu, one 1024x1024 image prompt: vision + adapter, then prefill (kernel, duration ns)"
    csv="${OUT:-/tmp}/ncu_prompt.csv"
    ncu --clock-control none --profile-from-start off --metrics gpu__time_duration.sum --csv \
      "$dir/bin/prompt_bench" --model /tmp/pixtral-12b --backend cuda --images 1 \
      --image_sizes 1024 --ttft=false --warmup 1 --repeats 1 --profile \
      > "$csv" 2> "${OUT:-/tmp}/ncu_prompt.log" || status=1
    python3 bench/ncu_summary.py "$csv" 40
  fi
  echo "== prompt_bench, ${PROMPT_IMAGES:-1,2,4} images of ${PROMPT_SIDES:-512,1024} px"
  timeout "${PROMPT_TIMEOUT:-400}" "$dir/bin/prompt_bench" --model /tmp/pixtral-12b \
    --backend cuda --repeats "${PROMPT_REPEATS:-3}" --images "${PROMPT_IMAGES:-1,2,4}" \
    --image_sizes "${PROMPT_SIDES:-512,1024}" || status=1
fi
if [ -n "${REF:-}" ]; then
  echo "== compiled PyTorch peer (${REF}/compiled_decode.py), START ${DECODE_CONTEXT:-1000}"
  START="${DECODE_CONTEXT:-1000}" BATCHES="${REF_BATCHES:-1,16,64}" PYTHONUNBUFFERED=1 \
    timeout "${REF_TIMEOUT:-420}" python3 "$REF/compiled_decode.py" || status=1
fi
if [ -n "${HF:-}" ]; then
  echo "== Hugging Face eager peer (${HF}/hf_anchors.py)"
  PYTHONUNBUFFERED=1 timeout "${HF_TIMEOUT:-300}" python3 "$HF/hf_anchors.py" || status=1
fi
exit $status
