#include "decoder/sampler.h"

namespace pixtral {

absl::Status ValidateSamplingParams(const SamplingParams& params) {
  return kernels::ValidateRowSampling(params.temperature, params.top_p);
}

absl::StatusOr<std::vector<double>> NucleusDistribution(absl::Span<const float> logits,
                                                        float temperature, float top_p) {
  return kernels::NucleusDistribution(logits, temperature, top_p);
}

absl::StatusOr<Sampler> Sampler::Create(const SamplingParams& params) {
  if (absl::Status s = ValidateSamplingParams(params); !s.ok()) return s;
  return Sampler(params);
}

kernels::RowSampling Sampler::NextDraw() {
  kernels::RowSampling draw{.temperature = params_.temperature, .top_p = params_.top_p};
  if (params_.temperature != 0.0f) draw.uniform = rng_.Uniform();
  return draw;
}

absl::StatusOr<SampledToken> Sampler::Sample(absl::Span<const float> logits) {
  return kernels::SampleRow(logits, NextDraw());
}

}  // namespace pixtral
