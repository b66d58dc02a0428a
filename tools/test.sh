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
# One plain summary line for CI readers: "N passed, N failed".
passed=$(grep -cE '^//.* +PASSED in' /tmp/pixtral-bazel-test.log || true)
failed=$(grep -cE '^//.* +(FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' /tmp/pixtral-bazel-test.log || true)
echo "tests: ${passed} passed, ${failed} failed"
# Then every fuzz target for a bounded time under ASan and UBSan (clang); a finding fails CI.
set +e
FUZZ_SECONDS="${FUZZ_SECONDS:-60}" tools/fuzz.sh
fuzz_status=$?
set -e
[ "$status" -ne 0 ] && exit "$status"
exit "$fuzz_status"
