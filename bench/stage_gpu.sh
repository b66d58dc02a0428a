#!/usr/bin/env bash
# Builds the GPU tests and benchmarks here and stages them, with the shared libraries they need
# that a GPU machine's image lacks (Debian's Abseil, this project's own), into a folder for the
# device tool's `carry` (default .device/; the first argument names another, e.g. a folder inside
# the checkout that the device tool sends). The C and C++ runtimes and the CUDA runtime come from
# that machine's CUDA toolkit (cuBLAS too: 600 MB, too large to carry; NCCL, 218 MB, from the
# toolkit or the NCCL wheel of the machine's PyTorch: bench/run_gpu.sh finds it).
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-.device}"
targets=(//kernels/cuda:convert_test //kernels/cuda:cuda_backend_test //tests:cuda_golden_test
  //decoder:decode_graphs_test //tests:cuda_tp_test
  //bench:convert_bench //bench:decode_bench //bench:matmul_bench //bench:prompt_bench //tools:make_random_model)
# SERVED=1 also stages the three services and the served-path benchmark (run_gpu.sh SERVED=1),
# with tekken.json (gzipped) for the random model folder and a photo to send.
if [ "${SERVED:-0}" = 1 ]; then
  targets+=(//services/gateway:gateway_server //services/vision_worker:vision_worker
    //services/decoder_worker:decoder_worker //bench:served_bench)
  # LOAD_BENCH=1: the mixed-load benchmark too (3 MB more, past the ~55 MiB the carry leaves).
  [ "${LOAD_BENCH:-0}" = 1 ] && targets+=(//bench:load_bench)
fi
bazel build --jobs=2 "${targets[@]}"
rm -rf "$dest" && mkdir -p "$dest/bin" "$dest/lib"
# Libraries the GPU machine has (C and C++ runtimes, the CUDA toolkit's), and libraries OpenCV
# links for formats and routines nothing here uses (and libcurl: no image URLs there), replaced by stand-ins
# (bench/stub_shared_lib.sh): with their own dependencies they would not fit the carry.
system='^(libc|libm|libstdc\+\+|libgcc_s|libdl|libpthread|librt|libcudart|libcublas|libcublasLt|libnccl|ld-linux-x86-64)\.so'
stubbed=" libgdal.so.32 libgdcmMSFF.so.3.0 libgdcmDSED.so.3.0 libOpenEXR-3_1.so.30 liblapack.so.3 libblas.so.3 libGLX.so.0 libcurl.so.4 "
declare -A where
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
# Copies what `file` needs, and what that needs, except the system's and the stubbed libraries.
stage_needs() {
  local name
  for name in $(needed "$1"); do
    [[ "$name" =~ $system ]] && continue
    [[ "$stubbed" == *" $name "* ]] && continue
    [ -e "$dest/lib/$name" ] && continue
    [ -n "${where[$name]:-}" ] || { echo "stage_gpu.sh: no path for $name" >&2; exit 1; }
    cp -L "${where[$name]}" "$dest/lib/$name"
    stage_needs "$dest/lib/$name"
  done
}
for target in "${targets[@]}"; do
  binary="bazel-bin/$(echo "${target#//}" | tr ':' '/')"
  cp -L "$binary" "$dest/bin/"
  while read -r name path; do where[$name]="$path"; done < <(ldd "$binary" | awk '/=> \// {print $1, $3}')
done
for binary in "$dest"/bin/*; do stage_needs "$binary"; done
for name in $stubbed; do
  importers=$(for file in "$dest"/bin/* "$dest"/lib/*; do
    needed "$file" | grep -qxF "$name" && echo "$file"; done || true)
  [ -n "$importers" ] || continue
  # shellcheck disable=SC2086
  bench/stub_shared_lib.sh "${where[$name]}" "$dest/lib" $importers
done
# Debug info is half the size of the binaries and not needed to run them.
chmod u+w "$dest"/bin/* "$dest"/lib/*
strip --strip-debug "$dest"/bin/* "$dest"/lib/*
if [ "${SERVED:-0}" = 1 ]; then
  gzip -c tests/data/generated/tekken.json >"$dest/tekken.json.gz"
  cp tests/data/images/coffee_big.jpg "$dest/photo.jpg"
fi
cp bench/run_gpu.sh bench/tp_bench.sh "$dest/"
du -sh "$dest"
