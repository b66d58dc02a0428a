// Rotary position tables for Backend::Rope, built on the host.
//
// Both tables hold, per token, head_dim/2 (cos θ, sin θ) pairs for Mistral's interleaved
// complex-pair layout, with base frequencies f_i = theta^(-2i / head_dim), i < head_dim/2.
//
// 1D (decoder): θ_i = position · f_i.
// 2D (vision, as mistral-inference's precompute_freqs_cis_2d): the first head_dim/4 pairs rotate by
// the patch's row with the even frequencies f_0, f_2, ..., the last head_dim/4 by its column with
// the odd frequencies f_1, f_3, ...
#ifndef PIXTRAL_KERNELS_ROPE_H_
#define PIXTRAL_KERNELS_ROPE_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace pixtral::kernels {

// f32 [positions.size(), head_dim/2, 2].
std::vector<float> RopeTable1D(absl::Span<const int32_t> positions, int head_dim, double theta);

// f32 [rows.size(), head_dim/2, 2]; rows[i], cols[i] are token i's patch coordinates.
std::vector<float> RopeTable2D(absl::Span<const int32_t> rows, absl::Span<const int32_t> cols,
                               int head_dim, double theta);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_ROPE_H_
