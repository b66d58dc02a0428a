#!/usr/bin/env bash
# Builds the GPU tests and benchmarks here and stages them, with the shared libraries they need
# that a GPU machine's image lacks (Debian's Abseil, this project's own), into a folder for the
# device tool's `carry` (default .device/; the first argument names another, e.g. a folder inside
# the checkout that the device tool sends). The C and C++ runtimes and the CUDA runtime come from
# that machine's CUDA toolkit (cuBLAS too: 600 MB, too large to carry).
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.device}"
targets=(//kernels/cuda:convert_test //kernels/cuda:cuda_backend_test //tests:cuda_golden_test
  //decoder:decode_graphs_test
  //bench:convert_bench //bench:decode_bench //bench:matmul_bench //bench:prompt_bench //tools:make_random_model)
bazel build --jobs=2 "${targets[@]}"
rm -rf "$dest" && mkdir -p "$dest/bin" "$dest/lib"
for target in "${targets[@]}"; do
  binary="bazel-bin/$(echo "${target#//}" | tr ':' '/')"
  cp -L "$binary" "$dest/bin/"
  ldd "$binary" | awk '/=> \// {print $3}' |
    { grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|libdl|libpthread|librt|libcudart|libcublas|libcublasLt)\.so' || true; } |
    xargs -r -I{} cp -L {} "$dest/lib/"
done
cp bench/run_gpu.sh "$dest/"
du -sh "$dest"
