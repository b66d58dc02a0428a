// Bandwidth of the bf16 <-> f32 conversion kernels on the GPU, against the device-to-device
// copy of the same bytes (the floor: the kernels only stream memory).
//
//   bazel build //bench:convert_bench && bazel-bin/bench/convert_bench
#include <cstdio>

#include "kernels/cuda/convert.h"

namespace {

constexpr int64_t kCount = int64_t{256} << 20;  // 256 Mi elements: 512 MB bf16, 1 GB f32
constexpr int kRepeats = 20;

template <typename Launch>
float TimeMs(Launch launch) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  launch();  // warm-up
  cudaEventRecord(start);
  for (int i = 0; i < kRepeats; ++i) launch();
  cudaEventRecord(stop);
  cudaEventSynchronize(stop);
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  return ms / kRepeats;
}

}  // namespace

int main() {
  uint16_t* bf16 = nullptr;
  float* f32 = nullptr;
  if (cudaMalloc(&bf16, kCount * 2) != cudaSuccess || cudaMalloc(&f32, kCount * 4) != cudaSuccess) {
    std::fprintf(stderr, "convert_bench: no GPU memory\n");
    return 1;
  }
  cudaMemset(bf16, 0, kCount * 2);
  const double bytes = kCount * 6.0;  // read one side, write the other
  const float widen = TimeMs([&] { pixtral::cuda::LaunchBf16ToF32({bf16, f32, kCount}, nullptr); });
  const float narrow = TimeMs([&] {
    pixtral::cuda::LaunchF32ToBf16({f32, bf16, kCount}, nullptr);
  });
  const float copy =
      TimeMs([&] { cudaMemcpy(f32 + kCount / 2, f32, kCount * 2, cudaMemcpyDeviceToDevice); });
  std::printf("bf16->f32: %.3f ms, %.0f GB/s\n", widen, bytes / widen / 1e6);
  std::printf("f32->bf16: %.3f ms, %.0f GB/s\n", narrow, bytes / narrow / 1e6);
  std::printf("d2d copy of %.0f MB (floor reference): %.3f ms, %.0f GB/s read+write\n",
              kCount * 2 / 1e6, copy, kCount * 4.0 / copy / 1e6);
  return cudaGetLastError() == cudaSuccess ? 0 : 1;
}
