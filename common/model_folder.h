// A model folder as Mistral ships it: params.json, consolidated.safetensors (or several
// *.safetensors shards) and tekken.json.
//
//   absl::StatusOr<ModelFolder> model = OpenModelFolder("/models/Pixtral-12B-2409");
//   if (!model.ok()) return model.status();   // names the file, tensor or key at fault
//   const TensorView* wq = model->weights.Find("layers.0.attention.wq.weight");
//
// Opening checks that the weights hold exactly the tensors params.json implies, with the right
// shapes, so model code can take every tensor's presence and shape for granted.
#ifndef PIXTRAL_COMMON_MODEL_FOLDER_H_
#define PIXTRAL_COMMON_MODEL_FOLDER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors.h"

namespace pixtral {

struct ModelFolder {
  std::string dir;
  ModelConfig config;
  SafetensorsCheckpoint weights;
  // Path of tekken.json, or empty when the folder has none (a weights-only folder still runs
  // token ids through the model).
  std::string tokenizer_path;
};

absl::StatusOr<ModelFolder> OpenModelFolder(const std::string& dir);

// Every weight tensor a model of this config has (Mistral naming), with its shape. The dtype
// field is the one Mistral ships (BF16); CheckWeights accepts any floating-point dtype.
std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config);

// InvalidArgument naming the first tensor that is missing, unexpected, of the wrong shape or of a
// non-floating-point dtype.
absl::Status CheckWeights(const ModelConfig& config, const SafetensorsCheckpoint& weights);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_MODEL_FOLDER_H_
