# syntax=docker/dockerfile:1
# The decoder-worker image (pixtral-decoder-worker): decoder_worker on a CUDA runtime base, non-root. Run it with
# the NVIDIA container runtime (a GPU and its driver from the node); the model folder is mounted
# at /models/pixtral at run time, never copied in.
#   docker build -f docker/decoder-worker.Dockerfile -t pixtral-decoder-worker .
# //tests:dockerfiles_test checks the runtime stage against the binary's real `ldd` and flags
# (no container engine runs where the tests run).

# ---- build: the project's own setup (Debian 12 packages, npm) and Bazel ----------------------
FROM debian:12 AS build
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && curl -fsSLo /tmp/cuda-keyring.deb \
      https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
 && dpkg -i /tmp/cuda-keyring.deb && apt-get update \
 && apt-get install -y --no-install-recommends cuda-toolkit-13-0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN tools/setup.sh \
 && bazel build -c opt //services/decoder_worker:decoder_worker \
 && install -D bazel-bin/services/decoder_worker/decoder_worker /out/decoder_worker

# ---- CUDA runtime base: Debian 12 slim plus NVIDIA's CUDA 13.0 runtime packages ---------------
# (NVIDIA's own nvidia/cuda runtime images are Ubuntu or UBI: their system libraries are not the
# Debian 12 ones the binaries are built against.) NCCL for --tp across the node's GPUs.
FROM debian:12-slim AS cuda-runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && curl -fsSLo /tmp/cuda-keyring.deb \
      https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
 && dpkg -i /tmp/cuda-keyring.deb && rm /tmp/cuda-keyring.deb && apt-get update \
 && apt-get install -y --no-install-recommends cuda-cudart-13-0 libcublas-13-0 libnccl2 \
 && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility

# ---- runtime ---------------------------------------------------------------------------------
FROM cuda-runtime
RUN apt-get update && apt-get install -y --no-install-recommends \
      libabsl20220623 libc-ares2 libcpp-httplib0.11 libgflags2.2 libgoogle-glog0v6 \
      libgrpc++1.51 libgrpc29 libpcre2-8-0 libprotobuf32 libre2-9 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/decoder_worker /app/decoder_worker
USER 65532:65532
EXPOSE 9002 9090
ENTRYPOINT ["/app/decoder_worker"]
CMD ["--model_dir=/models/pixtral", "--port=9002", "--metrics_port=9090", "--backend=cuda"]
