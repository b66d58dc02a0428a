#include "decoder/tp_groups.h"
#include "kernels/create_backend.h"
#include "services/embedded/embedded_backend.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateEmbeddedBackend(const std::string& name) {
  return kernels::CreateBackend(name);
}

absl::StatusOr<TensorParallelOptions> EmbeddedTensorParallel(const std::string& name, int size) {
  return TensorParallelGroup(name, size);
}

}  // namespace pixtral
