#!/usr/bin/env bash
# Runs on the lent GPU machine over binaries built here and staged by bench/stage_gpu.sh into
# .device/ (carried; nothing is built there): correctness first, then timings.
set -uo pipefail
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH="$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
status=0
for test in .device/bin/*_test; do
  echo "== $test"
  "$test" || status=1
done
for bench in .device/bin/*_bench; do
  echo "== $bench"
  "$bench" || status=1
done
exit $status
