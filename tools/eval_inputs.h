// The inputs file of `pixtral_eval forward` and `pixtral_eval generate`: a safetensors file
// holding `input_ids` (int64 [S]) and `pixel_values_0`, `pixel_values_1`, ... (float32 [3, H, W],
// preprocessed, in the order their [IMG] blocks appear in input_ids).
#ifndef PIXTRAL_TOOLS_EVAL_INPUTS_H_
#define PIXTRAL_TOOLS_EVAL_INPUTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "decoder/generate.h"

namespace pixtral {

// INVALID_ARGUMENT naming the tensor at fault: a missing or empty input_ids, ids that do not fit
// in int32, pixel values of the wrong dtype or rank, numbering with gaps, or unknown tensors.
// Whether ids and images fit the model is for the model to check.
absl::StatusOr<Prompt> LoadEvalInputs(const std::string& path);

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_EVAL_INPUTS_H_
