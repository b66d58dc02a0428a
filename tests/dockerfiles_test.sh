#!/usr/bin/env bash
# Bazel entry point for dockerfiles_test.py (Debian's /usr/bin/python3 with python3-yaml; dpkg
# and apt-cache answer from the machine's package database, offline).
set -euo pipefail
exec /usr/bin/python3 tests/dockerfiles_test.py docker k8s/base \
  services/gateway/gateway_server services/vision_worker/vision_worker \
  services/decoder_worker/decoder_worker
