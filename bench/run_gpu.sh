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
#                  process and compares every token; DECODE_SETTINGS="A=1,B=2 A=3" runs the
#                  batch sizes again under each setting (env assignments).
#   MODEL_12B=1    the folder with vision too, and the 1024x1024 image prompt (prompt_bench).
#   MATMUL=1       times the decoder's matrix products alone (matmul_bench), with cuBLAS's
#                  default kernels and with the tuned ones.
#   PROFILE_BATCHES="1 16"  ncu's kernel times of one decode step at each batch size;
#   PROFILE_PROMPT=1        of one 1024x1024 image prompt (vision + adapter, prefill);
#   PROFILE_DETAIL=REGEX    ncu's full sections for the prompt's kernels matching REGEX;
#   DECODE_DETAIL=REGEX     for one decode step's kernels matching REGEX at DETAIL_BATCH (64).
#   PROMPT_SETTINGS="A=1 B=2"  prompt_bench again under each setting, as DECODE_SETTINGS.
#   REF=DIR        then runs DIR/compiled_decode.py (the compiled-PyTorch peer) at the same
#                  context, BATCHES from REF_BATCHES (default "1,16,64").
#   HF=DIR         runs DIR/hf_anchors.py (copy and GEMM ceilings, Hugging Face eager on the
#                  image prompt and decode), its JSON into $OUT when set.
#   SERVED=1       the served system (stage_gpu.sh SERVED=1): decoder and vision workers on the
#                  GPU, the gateway on the CPU, on loopback, then bench/served_bench's scenarios
#                  (SERVED_SCENARIOS, default text,admit,multiturn,image: issue 8's targets and
#                  issue 9's served path) and the workers' cache counters; decode_bench at batch
#                  SERVED_TEXT_STREAMS after SERVED_TEXT_PROMPT tokens first, for the comparison
#                  (SERVED_DECODE_BENCH=0 skips it). On the model folder of MODEL_12B=1 (written if
#                  missing). SERVED_BACKEND=cpu SERVED_MODEL=DIR runs the same on the CPU (a toy
#                  folder); SERVED_ARGS adds served_bench flags (smaller sizes); SERVED_MODEL_ARGS
#                  make_random_model flags for the folder it writes (--n_layers 8: the wire and
#                  the CPU parts at full size, the compute cut). Report JSON and
#                  the services' logs into $OUT when set. With load_bench staged (LOAD_BENCH=1),
#                  also a mixed load (SERVED_LOAD_ARGS). SERVED_STEP_BUDGET and SERVED_MIXED_BUDGET:
#                  the decoder worker's --step_token_budget and --mixed_step_token_budget.
set -uo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.device}"
# Python (the peers, torch) runs with the machine's own libraries: the staged folder holds
# stand-ins for libblas, liblapack, libcurl and others (stage_gpu.sh) that must not shadow its.
machine_ld="/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
source bench/nccl_library_path.sh
export LD_LIBRARY_PATH="$PWD/$dir/lib:$machine_ld$nccl_dirs"
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
  # The same batch sizes under other settings: each entry of DECODE_SETTINGS is comma-separated
  # VAR=value assignments (tuning knobs such as PIXTRAL_DECODE_BLOCKS_PER_SM).
  for setting in ${DECODE_SETTINGS:-}; do
    for batch in ${DECODE_BATCHES:-1 16 64 128 256}; do
      echo "== decode_bench, batch $batch, context $context, $setting"
      env ${setting//,/ } "$dir/bin/decode_bench" --model "$model" --backend cuda --batch "$batch" \
        --prompt_tokens "$context" | grep '^decode,' || status=1
    done
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
ncu_pipes=sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
ncu_pipes+=,sm__inst_executed_pipe_alu.avg.pct_of_peak_sustained_active
ncu_pipes+=,sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active
ncu_pipes+=,sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active
ncu_pipes+=,sm__inst_executed_pipe_lsu.avg.pct_of_peak_sustained_active
# The lines of ncu's full sections worth reading in the log (the whole report goes to $OUT):
# the sections' named figures and the pipe metrics asked for, not --print-details' raw counters
# (l1tex__..., lts__...), which match "pipe_" by the hundred and push the figures out of `head`.
ncu_detail_lines() {
  grep -E "^  [A-Za-z].*Kernel|Duration|[Ss]tall|Issue Slots|Warp Cycles|Achieved Occupancy|Registers|Compute \(SM\) Throughput|Memory Throughput|DRAM Throughput|L2 Hit|Executed Ipc|pipe_" "$1" |
    grep -vE "^ +(l1tex|lts|dram)__|^ +(sm|smsp)__sass_" | head -"${2:-80}"
}
if [ -n "${DECODE_DETAIL:-}" ] && [ -n "$model" ]; then
  echo "== ncu --set full, one decode step at batch ${DETAIL_BATCH:-64}, kernels /${DECODE_DETAIL}/"
  detail="${OUT:-/tmp}/ncu_decode_detail.txt"
  ncu --clock-control none --profile-from-start off --set full --print-details all \
    --metrics "$ncu_pipes" -k "regex:${DECODE_DETAIL}" --launch-count "${PROFILE_DETAIL_COUNT:-2}" \
    "$dir/bin/decode_bench" --model "$model" --backend cuda --batch "${DETAIL_BATCH:-64}" \
    --prompt_tokens "${DECODE_CONTEXT:-1000}" --warmup_steps 2 --steps 2 --profile_step 2 \
    > "$detail" 2>&1 || status=1
  ncu_detail_lines "$detail" 120
fi
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
  if [ -n "${PROFILE_DETAIL:-}" ]; then
    # ncu's full sections (stall reasons, source counters) of the first launch of each kernel
    # matching the regex, e.g. "PagedPrefill|SegmentAttentionTiled", into $OUT.
    echo "== ncu --set full, one 1024x1024 image prompt, kernels /${PROFILE_DETAIL}/"
    detail="${OUT:-/tmp}/ncu_detail.txt"
    ncu --clock-control none --profile-from-start off --set full --print-details all \
      --metrics "$ncu_pipes" \
      -k "regex:${PROFILE_DETAIL}" --launch-count "${PROFILE_DETAIL_COUNT:-2}" \
      "$dir/bin/prompt_bench" --model /tmp/pixtral-12b --backend cuda --images 1 \
      --image_sizes 1024 --ttft=false --warmup 1 --repeats 1 --profile \
      > "$detail" 2>&1 || status=1
    ncu_detail_lines "$detail"
  fi
  echo "== prompt_bench, ${PROMPT_IMAGES:-1,2,4} images of ${PROMPT_SIDES:-512,1024} px"
  timeout "${PROMPT_TIMEOUT:-400}" "$dir/bin/prompt_bench" --model /tmp/pixtral-12b \
    --backend cuda --repeats "${PROMPT_REPEATS:-3}" --images "${PROMPT_IMAGES:-1,2,4}" \
    --image_sizes "${PROMPT_SIDES:-512,1024}" || status=1
  for setting in ${PROMPT_SETTINGS:-}; do
    echo "== prompt_bench, ${PROMPT_IMAGES:-1,2,4} images of ${PROMPT_SIDES:-512,1024} px, $setting"
    env ${setting//,/ } timeout "${PROMPT_TIMEOUT:-400}" "$dir/bin/prompt_bench" \
      --model /tmp/pixtral-12b --backend cuda --repeats "${PROMPT_REPEATS:-3}" \
      --images "${PROMPT_IMAGES:-1,2,4}" --image_sizes "${PROMPT_SIDES:-512,1024}" | grep '^|' ||
      status=1
  done
fi
if [ -n "${REF:-}" ]; then
  echo "== compiled PyTorch peer (${REF}/compiled_decode.py), START ${DECODE_CONTEXT:-1000}"
  START="${DECODE_CONTEXT:-1000}" BATCHES="${REF_BATCHES:-1,16,64}" PYTHONUNBUFFERED=1 \
    LD_LIBRARY_PATH="$machine_ld" timeout "${REF_TIMEOUT:-420}" python3 "$REF/compiled_decode.py" || status=1
fi
if [ -n "${HF:-}" ]; then
  echo "== Hugging Face eager peer (${HF}/hf_anchors.py)"
  PYTHONUNBUFFERED=1 LD_LIBRARY_PATH="$machine_ld" timeout "${HF_TIMEOUT:-300}" \
    python3 "$HF/hf_anchors.py" || status=1
fi
if [ "${SERVED:-0}" = 1 ]; then
  served_backend="${SERVED_BACKEND:-cuda}"
  served_model="${SERVED_MODEL:-/tmp/pixtral-12b}"
  served_out="${OUT:-$(mktemp -d)}"
  streams="${SERVED_TEXT_STREAMS:-64}"
  prompt="${SERVED_TEXT_PROMPT:-512}"
  port="${SERVED_PORT:-19000}"  # gateway; workers +1 and +2, metrics +10 to +12
  step_budget="${SERVED_STEP_BUDGET:-2048}"
  mixed_budget="${SERVED_MIXED_BUDGET:-0}"  # the decoder worker's --mixed_step_token_budget
  admit_budget=$((mixed_budget > 0 ? mixed_budget : step_budget))
  served_start=$(date +%s)
  rm -f "$served_out/gateway.port"
  if [ ! -e "$served_model/consolidated.safetensors" ]; then
    echo "== random Pixtral-12B folder (vision true) for the services"
    # shellcheck disable=SC2086
    timeout 300 "$dir/bin/make_random_model" --out "$served_model" --preset pixtral-12b \
      ${SERVED_MODEL_ARGS:-} || status=1
  fi
  # The gateway tokenizes: the folder needs tekken.json (the random folder has none).
  [ -e "$served_model/tekken.json" ] || gunzip -c "$dir/tekken.json.gz" >"$served_model/tekken.json"
  if [ "$served_backend" = cuda ] && [ "${SERVED_DECODE_BENCH:-1}" = 1 ]; then
    echo "== decode_bench, batch $streams, context $prompt (the served text target's reference)"
    timeout 120 "$dir/bin/decode_bench" --model "$served_model" --backend cuda --batch "$streams" \
      --prompt_tokens "$prompt" | grep -v '^sequence 0 tokens' || status=1
  fi
  echo "== served: decoder and vision workers (--backend $served_backend), gateway on the CPU"
  pids=()
  stop_services() {
    local pid
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${pids[@]}"; do timeout 20 tail --pid="$pid" -f /dev/null || kill -KILL "$pid"; done
    pids=()
  }
  trap stop_services EXIT
  "$dir/bin/decoder_worker" --model_dir "$served_model" --backend "$served_backend" \
    --host 127.0.0.1 --port $((port + 2)) --metrics_port $((port + 12)) --cache_tokens "${SERVED_CACHE_TOKENS:-65536}" \
    --max_batch_size "${SERVED_MAX_BATCH:-64}" --step_token_budget "$step_budget" \
    --mixed_step_token_budget "$mixed_budget" \
    --shutdown_grace 2s 2>"$served_out/served_decoder.log" &
  pids+=($!)
  "$dir/bin/vision_worker" --model_dir "$served_model" --backend "$served_backend" \
    --host 127.0.0.1 --port $((port + 1)) --metrics_port $((port + 11)) --shutdown_grace 2s \
    2>"$served_out/served_vision.log" &
  pids+=($!)
  "$dir/bin/gateway_server" --model_dir "$served_model" --host 127.0.0.1 --port $((port + 0)) \
    --metrics_port $((port + 10)) --vision_workers 127.0.0.1:$((port + 1)) --decoder_workers 127.0.0.1:$((port + 2)) \
    --max_concurrent_requests 512 --shutdown_grace 2s --port_file "$served_out/gateway.port" \
    2>"$served_out/served_gateway.log" &
  pids+=($!)
  # GET /metrics with bash alone (HTTP/1.0: the server closes after the answer).
  metrics() (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
    timeout 5 cat <&3
  ) 2>/dev/null
  # Ready when the gateway serves (its port file) and both workers have loaded their weights
  # (the gateway then connects within ~1 s; served_bench's warm-up waits for that too).
  ready=0
  for _ in $(seq 1 "${SERVED_LOAD_TIMEOUT:-150}"); do
    if [ -s "$served_out/gateway.port" ] && metrics $((port + 11)) | grep -q '^pixtral_model_loaded 1' &&
      metrics $((port + 12)) | grep -q '^pixtral_model_loaded 1'; then
      ready=1
      break
    fi
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || break 2; done  # one died
    sleep 1
  done
  echo "services ready: $ready after $(($(date +%s) - served_start)) s"
  if [ "$ready" = 1 ]; then
    # shellcheck disable=SC2086
    timeout "${SERVED_TIMEOUT:-200}" "$dir/bin/served_bench" --gateway 127.0.0.1:$((port + 0)) \
      --photo "$dir/photo.jpg" --scenarios "${SERVED_SCENARIOS:-text,admit,multiturn,image}" \
      --text_streams "$streams" --text_prompt_tokens "$prompt" --out "$served_out/served.json" \
      --step_token_budget "$admit_budget" \
      ${SERVED_ARGS:-} || status=1
    if [ -x "$dir/bin/load_bench" ]; then
      # A mixed load (staged with LOAD_BENCH=1): text and image chats, repeats, two turns.
      echo "== load_bench against the served system"
      # shellcheck disable=SC2086
      timeout "${SERVED_LOAD_TIMEOUT_S:-90}" "$dir/bin/load_bench" --gateway 127.0.0.1:$((port + 0)) \
        --out "$served_out/served_load.json" ${SERVED_LOAD_ARGS:---sessions 64 --concurrency 32 --image_sides 512,1024} \
        >/dev/null || status=1
      tr -d ' \n' <"$served_out/served_load.json" | head -c 2000
      echo
    fi
    echo "== cache counters (decoder worker: prefix cache; vision worker: image cache)"
    { metrics $((port + 12)); metrics $((port + 11)); } | grep -E '^pixtral_(prefix|image)_cache_(queries|hits)_total' || true
  else
    status=1
  fi
  stop_services
  trap - EXIT
  for log in "$served_out"/served_*.log; do
    echo "-- last lines of $log"
    tail -n 5 "$log"
  done
  echo "served block: $(($(date +%s) - served_start)) s"
fi
exit $status
