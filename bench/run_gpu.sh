#!/usr/bin/env bash
# Runs on the lent GPU machine, from the repository root, over binaries built here and staged by
# bench/stage_gpu.sh (carried; nothing is built there): correctness first, then timings. The
# first argument is the staged folder (default .device).
#   TESTS=0        skips the tests and the kernel benchmarks; SANITIZE=1 also runs the CUDA
#                  backend test under compute-sanitizer's memcheck.
#   DECODE=1       writes a random Pixtral-12B decoder folder to /tmp and runs decode_bench at
#                  each of DECODE_BATCHES (default "1 16 64 128 256") after DECODE_CONTEXT
#                  (default 1000) prompt tokens per sequence, and compares sequence 0's greedy
#                  tokens across the batch sizes.
#   MODEL_12B=1    the folder with vision too, and the 1024x1024 image prompt (prompt_bench).
#   MATMUL=1       times the decoder's matrix products alone (matmul_bench), with cuBLAS's
#                  default kernels and with the tuned ones.
#   REF=DIR        then runs DIR/compiled_decode.py (the compiled-PyTorch peer) at the same
#                  context, BATCHES from REF_BATCHES (default "1,16,64").
#   HF=DIR         runs DIR/hf_anchors.py (copy and GEMM ceilings, Hugging Face eager on the
#                  image prompt and decode), its JSON into $OUT when set.
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.device}"
# NVLink SHARP stays off (its multicast can take a shared host's GPUs out of service); libnccl
# (not carried: 218 MB) comes from the CUDA toolkit or the NCCL wheel of the machine's PyTorch.
export NCCL_NVLS_ENABLE=0
nccl_dirs=""
for d in /usr/local/cuda/lib /usr/local/cuda/lib64 \
  "$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "lib"))' 2>/dev/null)"; do
  if [ -n "$d" ] && ls "$d"/libnccl.so* > /dev/null 2>&1; then nccl_dirs="$nccl_dirs:$d"; fi
done
export LD_LIBRARY_PATH="$PWD/$dir/lib:/usr/local/cuda/lib64$nccl_dirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
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
      --prompt_tokens "$context" | tee "$tokens_dir/b$batch" | grep -v '^sequence 0 tokens' ||
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
  python3 - "$csv" <<'PY'
import csv, collections, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
head, rows = rows[0], rows[1:]
name, value = head.index("Kernel Name"), head.index("Metric Value")
total = collections.defaultdict(float); count = collections.Counter()
for r in rows:
    k = r[name][:60]; total[k] += float(r[value].replace(",", "")); count[k] += 1
s = sum(total.values())
print(f"{len(rows)} kernels, {s/1e6:.2f} ms of kernel time")
for k, t in sorted(total.items(), key=lambda kv: -kv[1])[:25]:
    print(f"{t/1e3:10.1f} us {count[k]:5d}x  {k}")
PY
done
if [ "${MODEL_12B:-0}" = 1 ]; then
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
