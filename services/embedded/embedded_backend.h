// The compute backend the embedded stack runs on, by flag name, and the decoder's
// tensor-parallel group. Two libraries define it, so that
// a binary links only the backends it offers: `:embedded_stack` every backend ("cpu", "cuda"),
// `:embedded_stack_cpu` the CPU one alone, for the gateway, which links no CUDA ("cuda" is then
// UNAVAILABLE with a message that says where to find it).
#ifndef PIXTRAL_SERVICES_EMBEDDED_EMBEDDED_BACKEND_H_
#define PIXTRAL_SERVICES_EMBEDDED_EMBEDDED_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "decoder/tp_decoder.h"
#include "kernels/backend.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<kernels::Backend>> CreateEmbeddedBackend(const std::string& name);

// The tensor-parallel group of `size` ranks on backend `name` for the decoder (size 1: none, the
// plain Decoder), as decoder/tp_groups.h makes it; `:embedded_stack_cpu` has the CPU group only.
absl::StatusOr<TensorParallelOptions> EmbeddedTensorParallel(const std::string& name, int size);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_EMBEDDED_EMBEDDED_BACKEND_H_
