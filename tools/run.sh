#!/usr/bin/env bash
# The project's main job: installs what is missing, builds, and opens the bundled toy Pixtral
# model folder the way the engine does, printing its shape. Pass another folder (for example a
# downloaded Pixtral-12B-2409) as the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build //tools:inspect_model
model_dir="${1:-tests/data/pixtral-tiny}"
bazel-bin/tools/inspect_model "$model_dir"
