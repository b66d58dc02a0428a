// The CUDA backend: the Backend op interface on one NVIDIA GPU, one stream.
//
// Weights are copied to device memory once, by LoadWeight (cudaMalloc). Activations and per-op
// scratch come from the device's stream-ordered memory pool (cudaMallocAsync on the backend's
// stream), so that the many short-lived tensors of a forward step cost no device-wide
// synchronization. Matrix products run on cuBLAS: bf16 weights meet activations rounded to bf16,
// accumulating in float32; float32 weights use a float32 product. The KV cache is bf16.
// CopyFromHost and CopyToHost wait for the stream, so host memory is free to reuse on return.
//
//   absl::StatusOr<std::unique_ptr<Backend>> gpu = NewCudaBackend();  // UNAVAILABLE without a GPU
//   if (!gpu.ok()) return gpu.status();
//   auto model = PixtralModel::Load(dir, gpu->get(), cache_options);
#ifndef PIXTRAL_KERNELS_CUDA_CUDA_BACKEND_H_
#define PIXTRAL_KERNELS_CUDA_CUDA_BACKEND_H_

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace pixtral::kernels {

// A backend on CUDA device `device`; UNAVAILABLE when that device (or the driver) is not
// present. It makes `device` the calling thread's current device, and every later call on the
// backend must come from a thread with that current device (one thread per tensor-parallel rank).
absl::StatusOr<std::unique_ptr<Backend>> NewCudaBackend(int device = 0);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_CUDA_CUDA_BACKEND_H_
