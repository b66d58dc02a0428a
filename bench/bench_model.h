// What the model benchmarks share: a millisecond clock, and a model folder loaded onto a backend
// named as on the command line, with the load time printed.
#ifndef PIXTRAL_BENCH_BENCH_MODEL_H_
#define PIXTRAL_BENCH_BENCH_MODEL_H_

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "decoder/pixtral_model.h"
#include "kernels/backend.h"

namespace pixtral {

using Clock = std::chrono::steady_clock;

inline double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct BenchModel {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<PixtralModel> model;  // declared after the backend: destroyed before it
};

// Creates the backend ("cpu", "cuda"), loads `dir` onto it with `cache`, prints "load: N s".
absl::StatusOr<BenchModel> LoadBenchModel(const std::string& backend, const std::string& dir,
                                          const CacheOptions& cache);

}  // namespace pixtral

#endif  // PIXTRAL_BENCH_BENCH_MODEL_H_
