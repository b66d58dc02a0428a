#!/usr/bin/env bash
# Builds the GPU tests and benchmarks here and stages them, with the shared libraries they need
# that a GPU machine's image lacks (Debian's Abseil, this project's own), into .device/ for the
# device tool's `carry`. The C and C++ runtimes and the CUDA runtime come from that machine.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(//kernels/cuda:convert_test //bench:convert_bench)
bazel build "${targets[@]}"
rm -rf .device && mkdir -p .device/bin .device/lib
for target in "${targets[@]}"; do
  binary="bazel-bin/$(echo "${target#//}" | tr ':' '/')"
  cp -L "$binary" .device/bin/
  ldd "$binary" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|libdl|libpthread|librt|libcudart)\.so' |
    xargs -r -I{} cp -L {} .device/lib/
done
du -sh .device
