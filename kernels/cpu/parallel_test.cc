#include "kernels/cpu/parallel.h"

#include <atomic>
#include <vector>

#include "gtest/gtest.h"

namespace pixtral::kernels::cpu {
namespace {

TEST(ParallelForTest, CoversEveryItemExactlyOnce) {
  SetNumThreads(3);
  std::vector<std::atomic<int>> hits(1001);
  ParallelFor(1001, 1 << 20, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) hits[i]++;
  });
  for (const auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ParallelForTest, CheapLoopsRunInline) {
  SetNumThreads(4);
  int calls = 0;  // not atomic: a second thread would be a data race the sanitizer reports
  ParallelFor(10, 1, [&](int64_t begin, int64_t end) {
    ++calls;
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 10);
  });
  EXPECT_EQ(calls, 1);
}

TEST(ParallelForTest, EmptyRangeCallsNothing) {
  ParallelFor(0, 1 << 20, [](int64_t, int64_t) { FAIL(); });
}

}  // namespace
}  // namespace pixtral::kernels::cpu
