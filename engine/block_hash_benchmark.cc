// HashBytes' speed on what the servers hash: a 1024x1024 image's 8-bit RGB (3 MiB, the gateway's
// image key) and its encoder features (4096 x 1024 f32, 16 MiB, the vision worker's cache key
// and the decoder's key of unkeyed features).
//
//   bazel run -c opt //engine:block_hash_benchmark
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "engine/block_hash.h"

namespace pixtral {
namespace {

void BM_HashBytes(benchmark::State& state) {
  std::vector<uint8_t> data(state.range(0));
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 131 + (i >> 9));
  for (auto _ : state) benchmark::DoNotOptimize(HashBytes(data.data(), data.size()));
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_HashBytes)->Arg(3 << 20)->Arg(16 << 20);

}  // namespace
}  // namespace pixtral

BENCHMARK_MAIN();
