// How far a computed float vector is from its reference, for tests that compare against goldens
// or against another path through the code.
//
//   EXPECT_LE(RelativeError(logits, golden.Floats("logits")), 1e-4);
//   EXPECT_LE(MaxAbsDiff(batched, alone), 1e-5);
//
// Both are infinite when the sizes differ, so a truncated output fails any bound.
#ifndef PIXTRAL_COMMON_TESTING_COMPARE_H_
#define PIXTRAL_COMMON_TESTING_COMPARE_H_

#include "absl/types/span.h"

namespace pixtral {

// ||got - want|| / ||want|| in the L2 norm, summed in double.
double RelativeError(absl::Span<const float> got, absl::Span<const float> want);

// max |a[i] - b[i]|.
double MaxAbsDiff(absl::Span<const float> a, absl::Span<const float> b);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_TESTING_COMPARE_H_
