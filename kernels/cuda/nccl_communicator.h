// The NCCL communicator: one process drives the GPUs of its host, one thread and one CUDA
// backend per rank, rank r on GPU r. Collectives are queued on the rank backend's stream
// (Backend::NativeStream), in order with its ops, so an all-reduce waits for the product before
// it and the next op waits for the all-reduce without any host synchronization.
//
//   std::vector<Backend*> gpus = ...;  // gpus[r] = NewCudaBackend(r), made on rank r's thread
//   PIXTRAL_ASSIGN_OR_RETURN(auto comms, NewNcclCommunicators(gpus));
//   // thread r: comms[r]->AllReduceSum(partial);
//
// NVLink SHARP (NVLS) is switched off (NCCL_NVLS_ENABLE=0) unless the environment sets it: its
// multicast memory is not available on every host that lends GPUs, and NCCL then fails at init.
// Sums are deterministic for a fixed group and topology (NCCL's ring and tree orders are fixed)
// and equal on every rank.
#ifndef PIXTRAL_KERNELS_CUDA_NCCL_COMMUNICATOR_H_
#define PIXTRAL_KERNELS_CUDA_NCCL_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "kernels/communicator.h"

namespace pixtral::kernels {

// One communicator per backend; backends[r] must be a CUDA backend on device r. The
// communicators must be destroyed before their backends. UNAVAILABLE when NCCL cannot start
// (too few devices, no peer access, a bad environment).
absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> NewNcclCommunicators(
    absl::Span<Backend* const> backends);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_CUDA_NCCL_COMMUNICATOR_H_
