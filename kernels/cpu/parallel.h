// ParallelFor: splits [0, n) into contiguous chunks over a few threads of the calling process.
//
// The CPU backend's only threading primitive. Small loops run inline; larger ones get one chunk
// per thread (the caller's thread takes the first), so the work fn must be safe to run
// concurrently on disjoint ranges.
//
//   ParallelFor(rows, /*cost_per_item=*/cols, [&](int64_t begin, int64_t end) { ... });
#ifndef PIXTRAL_KERNELS_CPU_PARALLEL_H_
#define PIXTRAL_KERNELS_CPU_PARALLEL_H_

#include <cstdint>

#include "absl/functional/function_ref.h"

namespace pixtral::kernels::cpu {

// Threads ParallelFor uses (default: the machine's hardware threads, at most 16).
int NumThreads();
void SetNumThreads(int n);

// Runs fn(begin, end) over disjoint ranges covering [0, n). `cost_per_item` is a rough count of
// floating-point operations per item, used to keep small loops on one thread.
void ParallelFor(int64_t n, int64_t cost_per_item, absl::FunctionRef<void(int64_t, int64_t)> fn);

}  // namespace pixtral::kernels::cpu

#endif  // PIXTRAL_KERNELS_CPU_PARALLEL_H_
