// Sampling on the device: one token per row of logits, by kernels/sampling.h's rule (greedy, or
// temperature + top-p nucleus + an inverse-CDF draw in id order), so that only the chosen ids and
// their logprobs cross to the host.
//
// One block per row. Greedy rows take two passes over the row (max, then the softmax sum for the
// logprob); top-p rows select the nucleus threshold by a 4-pass radix select over the tempered
// scores' order-preserving bit patterns (a 256-bin histogram of probability mass per pass), then
// draw with a block-wide prefix sum over contiguous id ranges. Arithmetic is f32, so where the
// reference (f64) sits on a boundary between two tokens the choice may differ.
//
//   SampleParams p{.logits = logits, .draws = draws, .ids = ids, .logprobs = lp,
//                  .rows = 64, .vocab = 131072};
//   CUDA_CHECK(LaunchSample(p, stream));
#ifndef PIXTRAL_KERNELS_CUDA_SAMPLING_H_
#define PIXTRAL_KERNELS_CUDA_SAMPLING_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

struct SampleParams {
  const float* logits;  // [rows, vocab]
  // [rows, 3]: temperature (0: greedy), top_p, uniform draw in [0, 1).
  const float* draws;
  int32_t* ids;     // [rows]; -1 where the row has a NaN or +inf, or only -inf
  float* logprobs;  // [rows]; log_softmax of the raw logits at the id (NaN with id -1)
  int64_t rows;
  int64_t vocab;
};

cudaError_t LaunchSample(const SampleParams& params, cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_SAMPLING_H_
