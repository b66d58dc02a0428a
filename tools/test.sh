#!/usr/bin/env bash
# The project's test command: installs what is missing, then builds everything (the CUDA targets
# included, compiled by nvcc without a GPU), runs every test, then runs each fuzz target for
# FUZZ_SECONDS (default 60; tools/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build //... 
set +e
bazel test //... "$@" 2>&1 | tee /tmp/pixtral-bazel-test.log
status=${PIPESTATUS[0]}
set -e
# One plain summary line for CI readers: "N passed, N skipped, N failed". Bazel calls a target
# PASSED when every GoogleTest case in it skipped (the CUDA tests without a GPU), so a target
# whose log has skipped cases and none that ran is counted as skipped, and named.
passed=0
skipped=()
for target in $(grep -E '^//.* +PASSED in' /tmp/pixtral-bazel-test.log | awk '{print $1}'); do
  log="bazel-testlogs/$(echo "${target#//}" | tr ':' '/')/test.log"
  if [ -f "$log" ] && grep -q '^\[  SKIPPED \]' "$log" && ! grep -q '^\[       OK \]' "$log"; then
    skipped+=("$target")
  else
    passed=$((passed + 1))
  fi
done
failed=$(grep -cE '^//.* +(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' /tmp/pixtral-bazel-test.log || true)
# A target marked flaky that failed and then passed on a retry: passed, and named.
flaky=($(grep -E '^//.* +FLAKY' /tmp/pixtral-bazel-test.log | awk '{print $1}' || true))
passed=$((passed + ${#flaky[@]}))
echo "tests: ${passed} passed, ${#skipped[@]} skipped, ${failed} failed"
if [ "${#flaky[@]}" -gt 0 ]; then
  echo "passed only on a retry (flaky): ${flaky[*]}"
fi
if [ "${#skipped[@]}" -gt 0 ]; then
  echo "skipped (no GPU here; bench/run_gpu.sh runs them on a GPU machine): ${skipped[*]}"
fi
# Then every fuzz target for a bounded time under ASan and UBSan (clang); a finding fails CI.
set +e
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" tools/fuzz.sh
fuzz_status=$?
set -e
[ "$status" -ne 0 ] && exit "$status"
exit "$fuzz_status"
