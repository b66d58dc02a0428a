// Kernel launches with programmatic dependent launch (PDL, sm_90), for the backend's own kernels.
//
// A decode step is ~450 short kernels in a row; between two of them the GPU drains the first
// grid, then fetches and ramps the second. With PDL the next kernel's blocks are launched while
// the previous kernel's last blocks still run; they wait in hardware (griddepcontrol.wait) until
// that kernel has finished and its writes are visible, and may do what depends on no earlier
// kernel (streaming weights) before waiting. Measured on an H200 (bench/NOTES.md run 15): no
// change inside the decode steps' CUDA graphs (their launches were already back to back), -0.5
// ms on the vision encoder, whose ops launch one by one.
//
// The contract for a kernel launched by Launch:
//   __global__ void MyKernel(MyParams p) {
//     AllowNextKernel();        // optional, at the start: the next kernel may be scheduled now
//     ... reads of weights only (never of anything an earlier kernel writes) ...
//     WaitForPriorKernels();    // before the first other global read and before any write
//     ...
//   }
//   return Launch(MyKernel, grid, threads, shared_bytes, stream, p);
// A kernel that never calls WaitForPriorKernels must not be launched by Launch. Launches of
// other code (cuBLAS) keep ordinary stream order on both sides. PIXTRAL_PDL=0 turns the
// attribute off (the waits then return at once).
#ifndef PIXTRAL_KERNELS_CUDA_LAUNCH_CUH_
#define PIXTRAL_KERNELS_CUDA_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace pixtral::cuda {

// Blocks until every kernel this one depends on has completed and its memory is visible; a
// no-op for a kernel launched without the PDL attribute.
__device__ __forceinline__ void WaitForPriorKernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel in the stream be scheduled before this one ends (it still waits for this
// one's completion in WaitForPriorKernels).
__device__ __forceinline__ void AllowNextKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// Both, first thing in a kernel that has nothing to do before its inputs are ready.
__device__ __forceinline__ void StartAfterPriorKernels() {
  AllowNextKernel();
  WaitForPriorKernels();
}

// Whether launches carry the PDL attribute: on unless PIXTRAL_PDL=0.
inline bool PdlEnabled() {
  static const bool enabled = [] {
    const char* set = std::getenv("PIXTRAL_PDL");
    return set == nullptr || std::strcmp(set, "0") != 0;
  }();
  return enabled;
}

template <typename... Params, typename... Args>
cudaError_t Launch(void (*kernel)(Params...), dim3 grid, dim3 threads, size_t shared_bytes,
                   cudaStream_t stream, Args&&... args) {
  cudaLaunchAttribute attribute;
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = threads;
  config.dynamicSmemBytes = shared_bytes;
  config.stream = stream;
  config.attrs = &attribute;
  config.numAttrs = PdlEnabled() ? 1 : 0;
  return cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...);
}

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_LAUNCH_CUH_
