// The model's shape, from a model folder's params.json (mistral-inference's TransformerArgs and
// VisionEncoderArgs).
//
//   absl::StatusOr<ModelConfig> config = LoadModelConfig("/models/pixtral/params.json");
//   if (!config.ok()) return config.status();
//   int kv_heads = config->decoder.n_kv_heads;
//   if (config->vision.has_value()) { ... }   // a text-only Mistral has no vision encoder
//
// Unknown keys are ignored (params.json files carry fields for other tools). Missing required
// values, wrong JSON types and inconsistent shapes are InvalidArgument errors naming the key.
#ifndef PIXTRAL_COMMON_MODEL_CONFIG_H_
#define PIXTRAL_COMMON_MODEL_CONFIG_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pixtral {

// The Mistral decoder.
struct DecoderConfig {
  int dim = 0;
  int n_layers = 0;
  int head_dim = 0;    // n_heads * head_dim need not equal dim (it does not for Pixtral-12B)
  int hidden_dim = 0;  // SwiGLU inner width
  int n_heads = 0;
  int n_kv_heads = 0;  // grouped-query attention: n_heads is a multiple of it
  double rope_theta = 1e6;  // mistral-inference's default when params.json omits it
  double norm_eps = 0;
  int vocab_size = 0;
  std::optional<int> sliding_window;  // absent or null: full attention
};

// The Pixtral vision encoder and its vision-language adapter.
struct VisionEncoderConfig {
  int hidden_size = 0;
  int num_channels = 0;
  int image_size = 0;  // the largest image side the rotary table covers, in pixels
  int patch_size = 0;
  double rope_theta = 1e4;
  int intermediate_size = 0;
  int num_hidden_layers = 0;
  int num_attention_heads = 0;
  int image_token_id = 10;
  int image_break_token_id = 12;
  int image_end_token_id = 13;
  bool adapter_bias = true;

  int head_dim() const { return hidden_size / num_attention_heads; }
  // Patches along the longest side: rows and columns of the 2D rotary table.
  int max_patches_per_side() const { return image_size / patch_size; }
};

struct ModelConfig {
  DecoderConfig decoder;
  std::optional<VisionEncoderConfig> vision;
};

// Parses params.json text. `source` names it in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source = "params.json");

// Reads and parses a params.json file.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_MODEL_CONFIG_H_
