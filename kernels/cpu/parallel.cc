#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

namespace pixtral::kernels::cpu {
namespace {

// Below this many flops a loop is not worth a thread start (~tens of microseconds).
constexpr int64_t kMinCostPerThread = 1 << 18;

std::atomic<int> g_num_threads{0};

}  // namespace

int NumThreads() {
  int n = g_num_threads.load();
  if (n > 0) return n;
  return std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, 16);
}

void SetNumThreads(int n) { g_num_threads.store(std::max(n, 1)); }

void ParallelFor(int64_t n, int64_t cost_per_item, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  const int64_t by_cost =
      std::max<int64_t>(1, n * std::max<int64_t>(cost_per_item, 1) / kMinCostPerThread);
  const int64_t threads = std::min<int64_t>({NumThreads(), n, by_cost});
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  const int64_t chunk = (n + threads - 1) / threads;
  std::vector<std::thread> workers;
  for (int64_t begin = chunk; begin < n; begin += chunk) {
    workers.emplace_back([&fn, begin, end = std::min(n, begin + chunk)] { fn(begin, end); });
  }
  fn(0, std::min(n, chunk));
  for (std::thread& w : workers) w.join();
}

}  // namespace pixtral::kernels::cpu
