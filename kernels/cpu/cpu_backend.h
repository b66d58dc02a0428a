// The CPU backend: the float32 reference implementation of the op interface.
//
// Plain C++ over host memory, float32 math with bf16 weights widened on the fly, loops split over
// the machine's cores with ParallelFor. Weights loaded from a memory-mapped checkpoint are used in
// place, not copied. CI runs the whole system on this backend.
//
//   std::unique_ptr<Backend> cpu = NewCpuBackend();
#ifndef PIXTRAL_KERNELS_CPU_CPU_BACKEND_H_
#define PIXTRAL_KERNELS_CPU_CPU_BACKEND_H_

#include <memory>

#include "kernels/backend.h"

namespace pixtral::kernels {

struct CpuBackendOptions {
  // FusesRmsNormIntoMatMul true at every row count: a decoder then runs the layer schedule a
  // device backend runs at one row (norms and residual adds inside the products, here through
  // Backend's composed defaults), so that the schedule is tested on the CPU too.
  bool norms_inside_products = false;
};

std::unique_ptr<Backend> NewCpuBackend(CpuBackendOptions options = {});

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_CPU_CPU_BACKEND_H_
