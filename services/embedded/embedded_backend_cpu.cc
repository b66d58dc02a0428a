#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "services/embedded/embedded_backend.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateEmbeddedBackend(const std::string& name) {
  if (name == "cpu") return kernels::NewCpuBackend();
  if (name == "cuda") {
    return absl::UnavailableError(
        "this binary links no CUDA: run the model on GPU decoder and vision workers, or use "
        "gateway_server_cuda / mistral-chat for a single GPU process");
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown backend \"", name, "\" (cpu | cuda)"));
}

absl::StatusOr<TensorParallelOptions> EmbeddedTensorParallel(const std::string& name, int size) {
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("--tp must be >= 1, not ", size));
  if (name != "cpu") return CreateEmbeddedBackend(name).status();
  if (size == 1) return TensorParallelOptions{};
  return CpuTensorParallelGroup(size);
}

}  // namespace pixtral
