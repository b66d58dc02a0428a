#include "kernels/create_backend.h"
#include "services/embedded/embedded_backend.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateEmbeddedBackend(const std::string& name) {
  return kernels::CreateBackend(name);
}

}  // namespace pixtral
