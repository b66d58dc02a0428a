#!/usr/bin/env bash
# The project's main job: installs what is missing, builds mistral-chat and asks it about one of
# the bundled photos on the embedded (single-process) stack, printing the answer, the time to
# first token and tokens per second.
#
#   tools/run.sh                      # random-weight demo model (made once under demo/)
#   tools/run.sh MODEL_DIR [FLAGS]    # a model folder, e.g. a downloaded Pixtral-12B-2409;
#                                     # FLAGS go to mistral-chat (--backend, --max_tokens, ...)
#
# The demo model has Pixtral's architecture at toy size with random weights and the real tekken
# vocabulary: everything runs for real, and the text it prints is meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
bazel build //services/cli:mistral-chat //tools:make_random_model

if [ $# -gt 0 ]; then
  model_dir="$1"
  shift
else
  model_dir=demo/pixtral-random
  if [ ! -s "$model_dir/consolidated.safetensors" ]; then
    echo "run: writing the random-weight demo model to $model_dir"
    rm -rf "$model_dir.partial"
    bazel-bin/tools/make_random_model --out "$model_dir.partial" --seed 1 \
      --tekken tests/data/generated/tekken.json
    rm -rf "$model_dir"
    mv "$model_dir.partial" "$model_dir"
  fi
fi

prompt="Describe the image."
image=tests/data/images/chelsea.png
echo "run: mistral-chat $model_dir --prompt \"$prompt\" --image $image"
bazel-bin/services/cli/mistral-chat "$model_dir" --instruct --max_tokens 64 --temperature 0.35 \
  --seed 0 --prompt "$prompt" --image "$image" "$@"
