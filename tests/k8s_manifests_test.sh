#!/usr/bin/env bash
# Bazel entry point for k8s_manifests_test.py (Bazel 4's py_test needs a Python toolchain setup;
# Debian's /usr/bin/python3 with python3-yaml and python3-prometheus-client (tools/setup.sh) is
# enough; node runs the schema validator).
set -euo pipefail
exec /usr/bin/python3 tests/k8s_manifests_test.py k8s tools/npm/validate_k8s.mjs \
  tests/data/generated/tekken.json tests/data/images/chelsea.png \
  services/gateway/gateway_server services/vision_worker/vision_worker \
  services/decoder_worker/decoder_worker tools/make_random_model tools/health_probe \
  services/cli/mistral-chat
