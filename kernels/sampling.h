// Choosing the next token from a row of logits: the reference every backend's SampleRows
// follows, and what decoder/sampler.h's Sampler runs on the host.
//
//   RowSampling draw{.temperature = 0.7f, .top_p = 0.9f, .uniform = rng.Uniform()};
//   absl::StatusOr<SampledRow> next = SampleRow(logits_row, draw);
//
// At temperature 0 the choice is greedy: the argmax, ties going to the lowest id. Otherwise the
// logits are divided by the temperature, softmaxed, cut to the nucleus (the smallest set of most
// likely tokens whose mass reaches top_p; ties in probability are ordered by id) and
// renormalized, and `uniform` picks a token by inverse CDF over the kept tokens in id order.
#ifndef PIXTRAL_KERNELS_SAMPLING_H_
#define PIXTRAL_KERNELS_SAMPLING_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pixtral::kernels {

// How one row is sampled. `uniform` in [0, 1) is the row's random draw (unused when greedy), so
// that the random stream stays with the caller and a seed reproduces a completion on any backend.
struct RowSampling {
  float temperature = 0.0f;  // 0: greedy; else finite and positive
  float top_p = 1.0f;        // in (0, 1]
  double uniform = 0.0;
};

struct SampledRow {
  int32_t id = 0;
  // log_softmax of the raw (untempered, uncut) logits at `id`.
  float logprob = 0.0f;
};

// INVALID_ARGUMENT unless temperature is finite and >= 0 and top_p is in (0, 1].
absl::Status ValidateRowSampling(float temperature, float top_p);

// softmax(logits / temperature) cut to the top_p nucleus and renormalized, one probability per
// token id (0 outside the nucleus). Requires temperature > 0. INVALID_ARGUMENT for bad params,
// empty logits, a NaN or +inf logit, or logits that are all -inf (-inf alone marks a token that
// can never be chosen).
absl::StatusOr<std::vector<double>> NucleusDistribution(absl::Span<const float> logits,
                                                        float temperature, float top_p);

// The token `sampling` picks from `logits`. Errors as NucleusDistribution.
absl::StatusOr<SampledRow> SampleRow(absl::Span<const float> logits, const RowSampling& sampling);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_SAMPLING_H_
