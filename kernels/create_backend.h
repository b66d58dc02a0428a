// Backends by name, as command-line flags name them ("cpu", "cuda").
#ifndef PIXTRAL_KERNELS_CREATE_BACKEND_H_
#define PIXTRAL_KERNELS_CREATE_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace pixtral::kernels {

// "cpu": the float32 reference backend. "cuda": the GPU backend, UNAVAILABLE where no CUDA
// device is present. Any other name is INVALID_ARGUMENT.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_CREATE_BACKEND_H_
