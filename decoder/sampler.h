// Sampling the next token from a row of logits.
//
// A Sampler belongs to one sequence: it owns that sequence's random stream, so a seed reproduces
// a completion whatever else is batched with it.
//
//   absl::StatusOr<Sampler> sampler = Sampler::Create({.temperature = 0.7f, .top_p = 0.9f,
//                                                      .seed = 42});
//   if (!sampler.ok()) return sampler.status();
//   absl::StatusOr<SampledToken> next = sampler->Sample(logits_row);
//
// At temperature 0 sampling is greedy: the argmax, ties going to the lowest id, and the random
// stream is not consumed. Otherwise the logits are divided by the temperature, softmaxed, cut to
// the nucleus (the smallest set of most likely tokens whose mass reaches top_p; ties in
// probability are ordered by id) and renormalized, and one uniform draw picks a token by inverse
// CDF over the kept tokens in id order.
//
// The random stream is common/splitmix64.h seeded with `seed`, one Uniform() per draw, so it is
// the same with every standard library.

#ifndef PIXTRAL_DECODER_SAMPLER_H_
#define PIXTRAL_DECODER_SAMPLER_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/splitmix64.h"
#include "kernels/sampling.h"

namespace pixtral {

struct SamplingParams {
  // 0 selects greedy decoding; otherwise a finite positive number.
  float temperature = 0.0f;
  // In (0, 1]; 1 keeps every token.
  float top_p = 1.0f;
  uint64_t seed = 0;
};

// INVALID_ARGUMENT unless temperature is finite and >= 0 and top_p is in (0, 1].
absl::Status ValidateSamplingParams(const SamplingParams& params);

// The id and its log_softmax under the raw (untempered, uncut) logits, as mistral-inference
// reports it.
using SampledToken = kernels::SampledRow;

// The distribution a non-greedy draw samples from: softmax(logits / temperature) cut to the
// top_p nucleus and renormalized, as one probability per token id (0 outside the nucleus).
// Requires temperature > 0. INVALID_ARGUMENT for bad params, empty logits, a NaN or +inf logit,
// or logits that are all -inf (-inf alone marks a token that can never be chosen).
absl::StatusOr<std::vector<double>> NucleusDistribution(absl::Span<const float> logits,
                                                        float temperature, float top_p);

class Sampler {
 public:
  static absl::StatusOr<Sampler> Create(const SamplingParams& params);

  // Picks one token from `logits` (one entry per vocabulary id). Errors as NucleusDistribution.
  absl::StatusOr<SampledToken> Sample(absl::Span<const float> logits);

  // The next draw of this sequence's stream, for a backend to sample on the device
  // (Decoder::ForwardSampled): Sample(logits) is kernels::SampleRow(logits, NextDraw()). Greedy
  // draws consume nothing.
  kernels::RowSampling NextDraw();

  const SamplingParams& params() const { return params_; }

 private:
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  SamplingParams params_;
  SplitMix64 rng_;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_SAMPLER_H_
