// Tensor-parallel groups by backend flag name, as the decoder worker's and the embedded mode's
// --backend and --tp flags name them: what ModelLoadOptions::tensor_parallel wants.
//
//   PIXTRAL_ASSIGN_OR_RETURN(TensorParallelOptions tp, TensorParallelGroup("cuda", 4));
//   PIXTRAL_ASSIGN_OR_RETURN(auto model, PixtralModel::Load(dir, gpu0, cache,
//                                                           {.tensor_parallel = tp}));
//
// "cpu": rank r is a CPU backend of its own, the ranks talk through the in-process communicator
// (kernels/cpu/cpu_communicator.h): the CI path. "cuda": rank r is NewCudaBackend(r), made on
// rank r's thread, and the group is one NCCL communicator a GPU (kernels/cuda/
// nccl_communicator.h, which switches NVLink SHARP off before NCCL starts); rank 0 is the
// caller's backend, which must be on GPU 0.
#ifndef PIXTRAL_DECODER_TP_GROUPS_H_
#define PIXTRAL_DECODER_TP_GROUPS_H_

#include <string>

#include "absl/status/statusor.h"
#include "decoder/tp_decoder.h"

namespace pixtral {

// Size 1: no group (options without a communicator factory: the plain Decoder). Size > 1: the
// group on backend `name`. InvalidArgument for a size below 1 or an unknown backend.
absl::StatusOr<TensorParallelOptions> TensorParallelGroup(const std::string& backend, int size);

// The CUDA group of `size` ranks (GPUs 0..size-1, NCCL), also at size 1: the tensor-parallel
// path on one GPU, for tests.
TensorParallelOptions CudaTensorParallelGroup(int size);

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_TP_GROUPS_H_
