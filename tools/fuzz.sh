#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz for a bounded time under ASan and UBSan (clang,
# `--config=fuzz`); exits non-zero on the first finding, leaving the input in $FUZZ_OUT.
#   tools/fuzz.sh                    # each target for FUZZ_SECONDS (default 60) seconds
#   FUZZ_SECONDS=10 tools/fuzz.sh image_decode_fuzzer
# New inputs go to a scratch copy of the corpus; add the interesting ones to
# tests/fuzz/corpus/NAME by hand (`-merge=1`), so they are replayed by NAME_corpus_test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
out="${FUZZ_OUT:-/tmp/pixtral-fuzz}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(tekken_fuzzer tekken_json_fuzzer safetensors_fuzzer params_json_fuzzer
           image_decode_fuzzer image_url_fuzzer chat_proto_fuzzer)
fi
bazel build --config=fuzz "${targets[@]/#/\/\/tests\/fuzz:}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
mkdir -p "$out"
for target in "${targets[@]}"; do
  scratch="$out/$target-corpus"
  rm -rf "$scratch" && mkdir -p "$scratch"
  echo "fuzz: $target for ${seconds}s"
  if ! bazel-bin/tests/fuzz/"$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$out/$target-" \
      "$scratch" "tests/fuzz/corpus/$target" >"$out/$target.log" 2>&1; then
    tail -n 60 "$out/$target.log"
    echo "fuzz: $target FOUND A PROBLEM (input and log in $out)" >&2
    exit 1
  fi
  grep -E "^stat::number_of_executed_units|^Done" "$out/$target.log" | tr '\n' ' '
  echo
done
echo "fuzz: ${#targets[@]} targets, ${seconds}s each, no findings"
