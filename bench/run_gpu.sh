#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, over binaries built here and staged by
# bench/stage_gpu.sh (carried; nothing is built there): correctness first, then timings. The
# first argument is the staged folder (default .device). With DECODE_12B=1 it also writes a
# random Pixtral-12B folder (decoder only) to /tmp and times batch-1 decode on it.
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
for test in "$dir"/bin/*_test; do
  echo "== $test"
  "$test" || status=1
done
for bench in "$dir"/bin/*_bench; do
  [ "$(basename "$bench")" = decode_bench ] && continue
  echo "== $bench"
  "$bench" || status=1
done
if [ "${DECODE_12B:-0}" = 1 ]; then
  echo "== decode_bench, Pixtral-12B shapes, random weights"
  start=$(date +%s)
  "$dir/bin/make_random_model" --out /tmp/pixtral-12b --preset pixtral-12b --vision=false ||
    status=1
  echo "random model written in $(($(date +%s) - start)) s"
  "$dir/bin/decode_bench" --model /tmp/pixtral-12b --backend cuda || status=1
fi
exit $status
