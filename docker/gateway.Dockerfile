# syntax=docker/dockerfile:1
# The gateway image (pixtral-gateway): gateway_server on slim Debian 12, non-root. The model
# folder is mounted at /models/pixtral at run time, never copied in.
#   docker build -f docker/gateway.Dockerfile -t pixtral-gateway .
# //tests:dockerfiles_test checks the runtime stage against the binary's real `ldd` and flags
# (no container engine runs where the tests run).

# ---- build: the project's own setup (Debian 12 packages, npm) and Bazel ----------------------
FROM debian:12 AS build
# The CUDA toolkit, from NVIDIA's Debian 12 repository: the build compiles the CUDA backend.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
 && curl -fsSLo /tmp/cuda-keyring.deb \
      https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb \
 && dpkg -i /tmp/cuda-keyring.deb && apt-get update \
 && apt-get install -y --no-install-recommends cuda-toolkit-13-0 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN tools/setup.sh \
 && bazel build -c opt //services/gateway:gateway_server \
 && install -D bazel-bin/services/gateway/gateway_server /out/gateway_server

# ---- runtime ---------------------------------------------------------------------------------
FROM debian:12-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libabsl20220623 libc-ares2 libcpp-httplib0.11 libcurl4 libgflags2.2 libgif7 \
      libgoogle-glog0v6 libgrpc++1.51 libgrpc29 libopencv-core406 libopencv-imgcodecs406 \
      libopencv-imgproc406 libpcre2-8-0 libprotobuf32 libre2-9 libssl3 zlib1g ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# gateway_server also holds the --embedded mode, so it links the CUDA runtime and cuBLAS even
# though the distributed gateway never calls them: the three libraries, at the binary's rpath.
COPY --from=build /usr/local/cuda/lib64/libcudart.so.13 /usr/local/cuda/lib64/libcublas.so.13 \
     /usr/local/cuda/lib64/libcublasLt.so.13 /usr/local/cuda/lib64/
COPY --from=build /out/gateway_server /app/gateway_server
USER 65532:65532
EXPOSE 8000 9090
ENTRYPOINT ["/app/gateway_server"]
CMD ["--model_dir=/models/pixtral", "--port=8000", "--metrics_port=9090"]
