#include "bench/bench_model.h"

#include <cstdio>
#include <utility>

#include "common/status_macros.h"
#include "kernels/create_backend.h"

namespace pixtral {

absl::StatusOr<BenchModel> LoadBenchModel(const std::string& backend, const std::string& dir,
                                          const CacheOptions& cache) {
  BenchModel loaded;
  PIXTRAL_ASSIGN_OR_RETURN(loaded.backend, kernels::CreateBackend(backend));
  const Clock::time_point start = Clock::now();
  PIXTRAL_ASSIGN_OR_RETURN(loaded.model, PixtralModel::Load(dir, loaded.backend.get(), cache));
  std::printf("load: %.1f s\n", MsSince(start) / 1000);
  return loaded;
}

}  // namespace pixtral
