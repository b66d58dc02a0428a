#!/usr/bin/env bash
# Bazel entry point for k8s_manifests_test.py (Bazel 4's py_test needs a Python toolchain setup;
# Debian's /usr/bin/python3 with python3-yaml (tools/setup.sh) is enough).
set -euo pipefail
exec /usr/bin/python3 tests/k8s_manifests_test.py k8s \
  services/gateway/gateway_server services/vision_worker/vision_worker \
  services/decoder_worker/decoder_worker
