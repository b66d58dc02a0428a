#include "decoder/tp_groups.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/cuda_backend.h"
#include "kernels/cuda/nccl_communicator.h"

namespace pixtral {

absl::StatusOr<TensorParallelOptions> TensorParallelGroup(const std::string& backend, int size) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("--tp must be >= 1, not ", size));
  if (backend != "cpu" && backend != "cuda") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown backend \"", backend, "\" (cpu, cuda)"));
  }
  if (size == 1) return TensorParallelOptions{};
  if (backend == "cpu") return CpuTensorParallelGroup(size);
  return TensorParallelOptions{
      .size = size,
      .make_backend = [](int rank) { return kernels::NewCudaBackend(rank); },
      .make_communicators = kernels::NewNcclCommunicators};
}

}  // namespace pixtral
