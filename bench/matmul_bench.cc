// The decoder's matrix products alone, at decode batch sizes: for each row count and each of the
// Pixtral-12B decoder's weight shapes, the time of Backend::MatMul and the weight-streaming rate
// it reaches (weight bytes over time; activations are small beside them), plus the implied
// matrix time of one decode step (40 layers and the output head). Eight copies of each weight
// are cycled so that no product reads its weights from L2.
//
//   matmul_bench --rows 1,16,64,256
//   PIXTRAL_CUBLAS_DEFAULT=1 matmul_bench   # cuBLAS's default kernels instead of tuned ones
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/dtype.h"
#include "kernels/backend.h"
#include "kernels/create_backend.h"

ABSL_FLAG(std::string, rows, "1,2,4,8,16,32,64,128,256", "Token rows of the products.");
ABSL_FLAG(int, repeats, 10, "Timed passes over the eight copies.");

namespace pixtral {
namespace {

using Clock = std::chrono::steady_clock;

struct Shape {
  const char* name;
  int64_t n, k;
  int per_layer;  // how many of this shape one decoder layer has (0: the output head)
};

// Pixtral-12B's decoder as Decoder loads it: wq/wk/wv stacked, wo, w1/w3 stacked, w2, and the
// output projection.
constexpr Shape kShapes[] = {{"wqkv", 6144, 5120, 1},
                             {"wo", 5120, 4096, 1},
                             {"w13", 28672, 5120, 1},
                             {"w2", 5120, 14336, 1},
                             {"output", 131072, 5120, 0}};
constexpr int kCopies = 8;
constexpr int kLayers = 40;

int Main() {
  absl::StatusOr<std::unique_ptr<kernels::Backend>> backend = kernels::CreateBackend("cuda");
  if (!backend.ok()) {
    std::fprintf(stderr, "matmul_bench: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  kernels::Backend& b = **backend;
  std::vector<int64_t> row_counts;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_rows), ',')) {
    int64_t r;
    if (!absl::SimpleAtoi(part, &r) || r < 1) {
      std::fprintf(stderr, "matmul_bench: bad --rows entry '%s'\n", std::string(part).c_str());
      return 2;
    }
    row_counts.push_back(r);
  }
  const int repeats = absl::GetFlag(FLAGS_repeats);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::printf("%-8s", "rows");
  for (const Shape& s : kShapes) std::printf(" %18s", s.name);
  std::printf(" %14s\n", "step ms (TB/s)");
  std::vector<std::vector<kernels::Tensor>> weights;
  for (const Shape& s : kShapes) {
    std::vector<uint16_t> host(s.n * s.k);
    for (uint16_t& v : host) v = FloatToBf16(normal(rng));
    auto owner = std::make_shared<std::vector<uint16_t>>(std::move(host));
    std::vector<kernels::Tensor> copies;
    for (int c = 0; c < (s.per_layer == 0 ? 2 : kCopies); ++c) {
      copies.push_back(*b.LoadWeight(DType::kBF16, {s.n, s.k}, owner->data(), owner));
    }
    weights.push_back(std::move(copies));
  }
  const kernels::Tensor done = *b.Alloc(DType::kF32, {1});
  for (const int64_t rows : row_counts) {
    std::printf("%-8lld", static_cast<long long>(rows));
    double step_ms = 0, step_bytes = 0;
    for (size_t i = 0; i < std::size(kShapes); ++i) {
      const Shape& s = kShapes[i];
      std::vector<float> xs(rows * s.k);
      for (float& v : xs) v = normal(rng);
      kernels::Tensor x = *kernels::ToBackend(b, xs, {rows, s.k});
      kernels::Tensor y = *b.Alloc(DType::kF32, {rows, s.n});
      const std::vector<kernels::Tensor>& copies = weights[i];
      for (const kernels::Tensor& w : copies) b.MatMul(x, w, nullptr, y);  // warm-up, tuning
      kernels::ToHost(b, done);  // waits for the queue (y itself can be a 134 MB read-back)
      const Clock::time_point start = Clock::now();
      for (int r = 0; r < repeats; ++r) {
        for (const kernels::Tensor& w : copies) b.MatMul(x, w, nullptr, y);
      }
      kernels::ToHost(b, done);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count() /
                        (repeats * copies.size());
      const double bytes = 2.0 * s.n * s.k;
      std::printf(" %8.1f us %4.2f TB", ms * 1e3, bytes / (ms * 1e-3) / 1e12);
      const int count = s.per_layer == 0 ? 1 : s.per_layer * kLayers;
      step_ms += ms * count;
      step_bytes += bytes * count;
    }
    std::printf(" %6.2f (%4.2f)\n", step_ms, step_bytes / (step_ms * 1e-3) / 1e12);
  }
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return pixtral::Main();
}
