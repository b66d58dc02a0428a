#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, over binaries built here and staged by
# bench/stage_gpu.sh (carried; nothing is built there): correctness first, then timings. The
# first argument is the staged folder (default .device). TESTS=0 skips the tests and the kernel
# benchmarks. With MODEL_12B=1 it also writes a random Pixtral-12B folder (vision included) to
# /tmp and times on it: decode at batch 1 and 16, then the 1024x1024 image prompt (vision
# encoder, prefill, time to first token).
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.device}"
export LD_LIBRARY_PATH="$PWD/$dir/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$dir"/bin/* | grep -q 'not found'; then
  echo "missing shared libraries:"
  ldd "$dir"/bin/* | grep 'not found' | sort -u
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
status=0
if [ "${TESTS:-1}" = 1 ]; then
  for test in "$dir"/bin/*_test; do
    echo "== $test"
    "$test" || status=1
  done
  for bench in "$dir"/bin/convert_bench; do
    echo "== $bench"
    "$bench" || status=1
  done
fi
if [ "${MODEL_12B:-0}" = 1 ]; then
  echo "== random Pixtral-12B folder"
  start=$(date +%s)
  "$dir/bin/make_random_model" --out /tmp/pixtral-12b --preset pixtral-12b || status=1
  echo "random model written in $(($(date +%s) - start)) s"
  for batch in 1 16; do
    echo "== decode_bench, batch $batch"
    "$dir/bin/decode_bench" --model /tmp/pixtral-12b --backend cuda --batch "$batch" || status=1
  done
  echo "== prompt_bench, one 1024x1024 image, 4213-token prompt"
  timeout "${PROMPT_TIMEOUT:-400}" "$dir/bin/prompt_bench" --model /tmp/pixtral-12b \
    --backend cuda --repeats "${PROMPT_REPEATS:-3}" || status=1
fi
exit $status
