#include "bench/bench_model.h"

#include <algorithm>
#include <cstdio>
#include <utility>
#include <vector>

#include "common/status_macros.h"
#include "decoder/tp_decoder.h"
#include "decoder/tp_groups.h"
#include "glog/logging.h"
#include "kernels/create_backend.h"

namespace pixtral {

absl::StatusOr<BenchModel> LoadBenchModel(const std::string& backend, const std::string& dir,
                                          const CacheOptions& cache, int tp) {
  BenchModel loaded;
  PIXTRAL_ASSIGN_OR_RETURN(TensorParallelOptions group, TensorParallelGroup(backend, tp));
  PIXTRAL_ASSIGN_OR_RETURN(loaded.backend, kernels::CreateBackend(backend));
  const Clock::time_point start = Clock::now();
  PIXTRAL_ASSIGN_OR_RETURN(loaded.model, PixtralModel::Load(dir, loaded.backend.get(), cache,
                                                            {.tensor_parallel = std::move(group)}));
  std::printf("load: %.1f s (tp %d)\n", MsSince(start) / 1000, tp);
  return loaded;
}

double AllReduceMsPerStep(PixtralModel& model, int64_t rows, int repeats) {
  auto* tp = dynamic_cast<TpDecoder*>(&model.decoder());
  if (tp == nullptr) return 0;
  const DecoderConfig& c = model.config().decoder;
  const int per_step = 2 * c.n_layers;
  std::vector<double> times;
  tp->OnRanks([&](int r) {
    kernels::Backend& b = tp->rank_backend(r);
    kernels::Communicator& comm = tp->rank_communicator(r);
    absl::StatusOr<kernels::Tensor> t = b.Alloc(kernels::DType::kF32, {rows, c.dim});
    CHECK(t.ok()) << t.status();
    const std::vector<float> zeros(rows * c.dim, 0.0f);
    b.CopyFromHost(zeros.data(), *t);
    for (int i = 0; i < repeats + 1; ++i) {  // the first round warms NCCL's channels up
      comm.Barrier();
      const Clock::time_point start = Clock::now();
      for (int k = 0; k < per_step; ++k) comm.AllReduceSum(*t);
      comm.Barrier();
      if (r == 0 && i > 0) times.push_back(MsSince(start));
    }
  });
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace pixtral
