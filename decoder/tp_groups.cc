#include "decoder/tp_groups.h"

#include <cuda_runtime_api.h>

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
  return CudaTensorParallelGroup(size);
}

TensorParallelOptions CudaTensorParallelGroup(int size) {
  return TensorParallelOptions{
      .size = size,
      .make_backend = [](int rank) { return kernels::NewCudaBackend(rank); },
      .make_communicators =
          [](absl::Span<kernels::Backend* const> backends) {
            // Rank 0 keeps working on this thread after the group starts: whatever GPU NCCL's
            // initialization leaves current, the caller's comes back.
            int device = 0;
            cudaGetDevice(&device);
            auto comms = kernels::NewNcclCommunicators(backends);
            cudaSetDevice(device);
            return comms;
          }};
}

}  // namespace pixtral
