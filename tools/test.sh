#!/usr/bin/env bash
# The project's test command: installs what is missing, then builds everything (the CUDA targets
# included, compiled by nvcc without a GPU) and runs every test.
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
exit "$status"
