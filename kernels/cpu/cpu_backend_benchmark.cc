// Throughput of the CPU backend's hot ops at decoder-like shapes.
//   bazel run -c opt //kernels/cpu:cpu_backend_benchmark
#include <vector>

#include "benchmark/benchmark.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral::kernels {
namespace {

// args: tokens, in features, out features; bf16 weights.
void BM_MatMulBf16(benchmark::State& state) {
  const int64_t t = state.range(0), k = state.range(1), n = state.range(2);
  std::unique_ptr<Backend> cpu = NewCpuBackend();
  Tensor x = *ToBackend(*cpu, std::vector<float>(t * k, 0.5f), {t, k});
  Tensor w = *cpu->Alloc(DType::kBF16, {n, k});
  std::vector<uint16_t> bits(n * k, FloatToBf16(0.25f));
  cpu->CopyFromHost(bits.data(), w);
  Tensor y = *cpu->Alloc(DType::kF32, {t, n});
  for (auto _ : state) {
    cpu->MatMul(x, w, nullptr, y);
    benchmark::DoNotOptimize(y.data<float>());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * t * k * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_MatMulBf16)->Args({1, 4096, 4096})->Args({64, 1024, 1024})->UseRealTime();

}  // namespace
}  // namespace pixtral::kernels
