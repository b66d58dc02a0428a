#include "kernels/create_backend.h"

#include "absl/strings/str_cat.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cuda/cuda_backend.h"

namespace pixtral::kernels {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name) {
  if (name == "cpu") return NewCpuBackend();
  if (name == "cuda") return NewCudaBackend();
  return absl::InvalidArgumentError(absl::StrCat("unknown backend \"", name, "\" (cpu, cuda)"));
}

}  // namespace pixtral::kernels
