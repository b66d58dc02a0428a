// Decode steps on the fixed buffers (padded rows, padded block tables, recorded and replayed ops)
// compute what the ordinary path computes: to the bit on the CPU reference backend, whose
// recordings replay the same ops (and fail on an allocation or a copy inside them, as a CUDA
// graph would); within bf16 rounding on the GPU (CUDA graphs; skipped where no GPU is visible),
// where a padded batch may take another GEMM kernel. The same for the tensor-parallel decoder
// on CPU backends (TP=2 and 4), whose ranks each record their share of the step, all-reduces
// included (tests/cuda_tp_test.cc has the NCCL case).
#include "decoder/decode_graphs.h"

#include <memory>
#include <vector>

#include "common/testing/compare.h"
#include "common/testing/pixtral_tiny.h"
#include "decoder/decoder.h"
#include "decoder/pixtral_model.h"
#include "decoder/testing/decode_scenario.h"
#include "decoder/tp_decoder.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"

namespace pixtral {
namespace {

TEST(DecodeBucketsTest, RowsAndContextsRoundUpToTheirBuckets) {
  const std::vector<std::pair<int, int>> rows = {
      {1, 1},   {2, 2},   {3, 4},    {5, 8},     {8, 8},   {9, 16}, {17, 24},
      {64, 64}, {65, 96}, {97, 128}, {256, 256}, {257, 0}, {0, 0}};
  for (const auto& [n, bucket] : rows) EXPECT_EQ(DecodeRowBucket(n), bucket) << n;
  const std::vector<std::pair<int64_t, int64_t>> contexts = {
      {1, 512},     {512, 512},     {513, 1024},    {4096, 4096},
      {4097, 8192}, {20000, 32768}, {32768, 32768}, {32769, 0}};
  for (const auto& [n, bucket] : contexts) EXPECT_EQ(DecodeContextBucket(n), bucket) << n;
}

// RunDecodeScenario on a fresh pixtral-tiny model on `backend` (tensor-parallel per `load`).
std::vector<std::vector<float>> RunScenario(kernels::Backend* backend, DecodeGraphMode mode,
                                            int64_t* replays, const ModelLoadOptions& load = {}) {
  auto model =
      PixtralModel::Load(kPixtralTinyDir, backend, {.block_size = 16, .num_blocks = 128}, load);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return {};
  std::vector<std::vector<float>> all = RunDecodeScenario(**model, mode, replays);
  // The buffers grew at 4 rows and at 16, each time dropping the recordings made on the old
  // ones: only (16, 1024)'s is left.
  EXPECT_EQ((*model)->decoder().decode_recordings(), mode == DecodeGraphMode::kRecorded ? 1 : 0);
  return all;
}

TEST(DecodeGraphsTest, FixedBuffersAndReplaysComputeWhatTheOrdinaryPathComputes) {
  std::unique_ptr<kernels::Backend> cpu = kernels::NewCpuBackend();
  int64_t replays = 0;
  const std::vector<std::vector<float>> expected =
      RunScenario(cpu.get(), DecodeGraphMode::kOff, &replays);
  ASSERT_EQ(expected.size(), 1u + 2 + 2 + 27 + 4 + 7 + 27);
  EXPECT_EQ(replays, 0);
  for (const DecodeGraphMode mode : {DecodeGraphMode::kBuffers, DecodeGraphMode::kRecorded}) {
    const std::vector<std::vector<float>> got = RunScenario(cpu.get(), mode, &replays);
    ASSERT_EQ(got.size(), expected.size());
    // The same ops on the same rows: equal to the last bit.
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], expected[i]) << "step output " << i;
    // Each key's first step runs its ops directly; the later ones replay.
    EXPECT_EQ(replays, mode == DecodeGraphMode::kRecorded ? kDecodeScenarioReplays : 0);
  }
}

// At TP=2 (one KV head a rank) and TP=4 (KV heads replicated): each rank's buffers are sized for
// its shard, its step's ops and two all-reduces a layer recorded and replayed on its thread.
// Against the same split without buffers (kOff), to the bit: the in-process all-reduce adds the
// ranks' partial sums in rank order whatever the row count.
TEST(DecodeGraphsTest, TensorParallelReplaysComputeWhatTheOrdinaryPathComputes) {
  for (const int size : {2, 4}) {
    SCOPED_TRACE(size);
    std::unique_ptr<kernels::Backend> cpu = kernels::NewCpuBackend();
    const ModelLoadOptions tp{.tensor_parallel = CpuTensorParallelGroup(size)};
    int64_t replays = 0;
    const std::vector<std::vector<float>> expected =
        RunScenario(cpu.get(), DecodeGraphMode::kOff, &replays, tp);
    ASSERT_EQ(expected.size(), 1u + 2 + 2 + 27 + 4 + 7 + 27);
    EXPECT_EQ(replays, 0);
    for (const DecodeGraphMode mode : {DecodeGraphMode::kBuffers, DecodeGraphMode::kRecorded}) {
      const std::vector<std::vector<float>> got = RunScenario(cpu.get(), mode, &replays, tp);
      ASSERT_EQ(got.size(), expected.size());
      for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], expected[i]) << "step output " << i;
      EXPECT_EQ(replays, mode == DecodeGraphMode::kRecorded ? kDecodeScenarioReplays : 0);
    }
  }
}

TEST(DecodeGraphsTest, CudaGraphReplaysComputeWhatTheOrdinaryPathComputes) {
  absl::StatusOr<std::unique_ptr<kernels::Backend>> gpu = kernels::NewCudaBackend();
  if (!gpu.ok()) GTEST_SKIP() << gpu.status();
  int64_t replays = 0;
  const std::vector<std::vector<float>> expected =
      RunScenario(gpu->get(), DecodeGraphMode::kOff, &replays);
  const std::vector<std::vector<float>> got =
      RunScenario(gpu->get(), DecodeGraphMode::kRecorded, &replays);
  ASSERT_EQ(got.size(), expected.size());
  EXPECT_EQ(replays, kDecodeScenarioReplays);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_LE(RelativeError(got[i], expected[i]), 1e-2) << "step output " << i;
  }
}

}  // namespace
}  // namespace pixtral
