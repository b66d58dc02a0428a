#include "kernels/cpu/cpu_communicator.h"

#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral::kernels {
namespace {

// Runs fn(rank) on one thread per rank, as a tensor-parallel group does.
void OnRanks(int size, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

TEST(CpuCommunicatorTest, AllReduceSumGivesEveryRankTheSumInRankOrder) {
  constexpr int kRanks = 4, kNumel = 1001;  // not a multiple of the ranks
  auto comms = NewCpuCommunicators(kRanks);
  auto backend = NewCpuBackend();
  std::vector<std::vector<float>> inputs(kRanks, std::vector<float>(kNumel));
  for (int r = 0; r < kRanks; ++r) {
    // Magnitudes that make the order of the additions visible in float32.
    for (int i = 0; i < kNumel; ++i) inputs[r][i] = (r == 0 ? 1e8f : 1.0f) * (i % 7 + 1) - r;
  }
  std::vector<float> expected(kNumel);
  for (int i = 0; i < kNumel; ++i) {
    float sum = inputs[0][i];
    for (int r = 1; r < kRanks; ++r) sum += inputs[r][i];
    expected[i] = sum;
  }
  std::vector<std::vector<float>> outputs(kRanks);
  OnRanks(kRanks, [&](int r) {
    Tensor t = *ToBackend(*backend, inputs[r], {kNumel});
    for (int repeat = 0; repeat < 3; ++repeat) {
      // Repeated collectives reuse the rendezvous: the first result must survive the second.
      if (repeat > 0) backend->CopyFromHost(inputs[r].data(), t);
      comms[r]->AllReduceSum(t);
    }
    outputs[r] = ToHost(*backend, t);
  });
  for (int r = 0; r < kRanks; ++r) {
    ASSERT_EQ(std::memcmp(outputs[r].data(), expected.data(), kNumel * sizeof(float)), 0)
        << "rank " << r;
  }
}

TEST(CpuCommunicatorTest, BroadcastCopiesTheRootsTensor) {
  constexpr int kRanks = 3;
  auto comms = NewCpuCommunicators(kRanks);
  auto backend = NewCpuBackend();
  std::vector<std::vector<float>> outputs(kRanks);
  OnRanks(kRanks, [&](int r) {
    Tensor t = *ToBackend(*backend, std::vector<float>{float(r), float(10 * r)}, {2});
    comms[r]->Broadcast(t, /*root=*/1);
    outputs[r] = ToHost(*backend, t);
  });
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(outputs[r], (std::vector<float>{1, 10})) << r;
}

TEST(CpuCommunicatorTest, AllGatherOrdersBuffersByRank) {
  constexpr int kRanks = 4;
  auto comms = NewCpuCommunicators(kRanks);
  std::vector<std::vector<int>> gathered(kRanks, std::vector<int>(2 * kRanks));
  OnRanks(kRanks, [&](int r) {
    const int mine[2] = {r, 100 + r};
    comms[r]->AllGather(mine, sizeof(mine), gathered[r].data());
    comms[r]->Barrier();
  });
  const std::vector<int> expected = {0, 100, 1, 101, 2, 102, 3, 103};
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(gathered[r], expected) << r;
}

TEST(CpuCommunicatorTest, OneRankIsTheIdentity) {
  auto comms = NewCpuCommunicators(1);
  auto backend = NewCpuBackend();
  Tensor t = *ToBackend(*backend, std::vector<float>{1.5f, -2.0f}, {2});
  comms[0]->AllReduceSum(t);
  comms[0]->Broadcast(t, 0);
  EXPECT_EQ(ToHost(*backend, t), (std::vector<float>{1.5f, -2.0f}));
  EXPECT_EQ(comms[0]->rank(), 0);
  EXPECT_EQ(comms[0]->size(), 1);
}

}  // namespace
}  // namespace pixtral::kernels
