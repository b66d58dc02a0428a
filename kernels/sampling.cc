#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace pixtral::kernels {
namespace {

// Checks a logits row: non-empty, no NaN or +inf, at least one finite entry. Returns the max.
absl::StatusOr<float> CheckLogits(absl::Span<const float> logits) {
  if (logits.empty()) return absl::InvalidArgumentError("sampler: empty logits");
  float max = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < logits.size(); ++i) {
    const float x = logits[i];
    if (std::isnan(x) || x == std::numeric_limits<float>::infinity()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampler: logit ", i, " is ", std::isnan(x) ? "NaN" : "+inf"));
    }
    max = std::max(max, x);
  }
  if (std::isinf(max)) return absl::InvalidArgumentError("sampler: every logit is -inf");
  return max;
}

// log_softmax(logits)[id] given max(logits).
float LogSoftmaxAt(absl::Span<const float> logits, float max, int32_t id) {
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  return static_cast<float>(static_cast<double>(logits[id]) - max - std::log(sum));
}

}  // namespace

absl::Status ValidateRowSampling(float temperature, float top_p) {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0, got ", temperature));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<double>> NucleusDistribution(absl::Span<const float> logits,
                                                        float temperature, float top_p) {
  if (absl::Status s = ValidateRowSampling(temperature, top_p); !s.ok()) return s;
  if (temperature == 0.0f) {
    return absl::InvalidArgumentError("NucleusDistribution needs temperature > 0");
  }
  absl::StatusOr<float> max = CheckLogits(logits);
  if (!max.ok()) return max.status();

  const size_t vocab = logits.size();
  std::vector<double> probs(vocab);
  double sum = 0.0;
  for (size_t i = 0; i < vocab; ++i) {
    probs[i] = std::exp((static_cast<double>(logits[i]) - *max) / temperature);
    sum += probs[i];
  }
  for (double& p : probs) p /= sum;
  if (top_p >= 1.0f) return probs;

  // Sort only as far as the nucleus reaches: a prefix of k tokens, growing k until it holds
  // top_p of the mass. Most rows need far fewer than the whole vocabulary.
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  auto more_likely = [&probs](int32_t a, int32_t b) {
    return probs[a] > probs[b] || (probs[a] == probs[b] && a < b);
  };
  size_t kept = vocab;
  for (size_t k = std::min<size_t>(64, vocab);; k = std::min(vocab, 4 * k)) {
    std::partial_sort(order.begin(), order.begin() + k, order.end(), more_likely);
    double mass = 0.0;
    size_t n = 0;
    while (n < k && mass < top_p) mass += probs[order[n++]];
    if (mass >= top_p || k == vocab) {
      kept = n;
      break;
    }
  }
  double kept_mass = 0.0;
  for (size_t i = 0; i < kept; ++i) kept_mass += probs[order[i]];
  std::vector<double> nucleus(vocab, 0.0);
  for (size_t i = 0; i < kept; ++i) nucleus[order[i]] = probs[order[i]] / kept_mass;
  return nucleus;
}

absl::StatusOr<SampledRow> SampleRow(absl::Span<const float> logits, const RowSampling& sampling) {
  absl::StatusOr<float> max = CheckLogits(logits);
  if (!max.ok()) return max.status();

  int32_t id = 0;
  if (sampling.temperature == 0.0f) {
    // First maximum wins, so ties go to the lowest id.
    id = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  } else {
    absl::StatusOr<std::vector<double>> probs =
        NucleusDistribution(logits, sampling.temperature, sampling.top_p);
    if (!probs.ok()) return probs.status();
    const double u = sampling.uniform;
    double cumulative = 0.0;
    int32_t last_kept = 0;
    for (size_t i = 0; i < probs->size(); ++i) {
      if ((*probs)[i] == 0.0) continue;
      last_kept = static_cast<int32_t>(i);
      cumulative += (*probs)[i];
      if (u < cumulative) break;
    }
    // If rounding leaves the total just under u, the last kept token takes the remainder.
    id = last_kept;
  }
  return SampledRow{.id = id, .logprob = LogSoftmaxAt(logits, *max, id)};
}

}  // namespace pixtral::kernels
