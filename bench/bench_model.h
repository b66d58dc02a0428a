// What the model benchmarks share: a millisecond clock, a model folder loaded onto a backend
// named as on the command line (its decoder split over --tp ranks), with the load time printed,
// and the time the tensor-parallel all-reduces of a step take alone.
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

// Creates the backend ("cpu", "cuda"), loads `dir` onto it with `cache` and the decoder over
// `tp` ranks (decoder/tp_groups.h; cuda: GPUs 0..tp-1), prints "load: N s".
absl::StatusOr<BenchModel> LoadBenchModel(const std::string& backend, const std::string& dir,
                                          const CacheOptions& cache, int tp = 1);

// Milliseconds that one step's all-reduces take on their own: the 2 x n_layers all-reduces of
// f32 [rows, dim] a step of `rows` tokens issues, run back to back on every rank (median of
// `repeats` rounds, each ended by a barrier that waits for the devices). 0 for an unsplit
// decoder. An upper bound on what they cost inside a step, where nothing overlaps them yet.
double AllReduceMsPerStep(PixtralModel& model, int64_t rows, int repeats = 20);

}  // namespace pixtral

#endif  // PIXTRAL_BENCH_BENCH_MODEL_H_
