// The in-process communicator of the CPU backend: the ranks of a tensor-parallel group are
// threads of one process and their tensors are host memory, so a collective is a rendezvous on
// shared pointers. CI tests every tensor-parallel path with it.
//
//   std::vector<std::unique_ptr<Communicator>> comms = NewCpuCommunicators(4);
//   // thread r: comms[r]->AllReduceSum(partial);
//
// AllReduceSum adds the ranks' values in rank order (0, 1, ...) for every element, whichever
// rank computes it, so every rank gets bit-identical sums and a run repeats exactly.
#ifndef PIXTRAL_KERNELS_CPU_CPU_COMMUNICATOR_H_
#define PIXTRAL_KERNELS_CPU_CPU_COMMUNICATOR_H_

#include <memory>
#include <vector>

#include "kernels/communicator.h"

namespace pixtral::kernels {

// One communicator per rank of a group of `size` (>= 1) ranks; rank r is element r. Tensors
// passed to them must be host memory (the CPU backend's).
std::vector<std::unique_ptr<Communicator>> NewCpuCommunicators(int size);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_CPU_CPU_COMMUNICATOR_H_
