// inspect_model MODEL_DIR: opens a Pixtral model folder the way the engine does (params.json,
// memory-mapped weights checked against it, tekken.json) and prints what it found.
#include <cstdint>
#include <iostream>
#include <map>
#include <string>

#include "absl/strings/str_format.h"
#include "common/model_folder.h"

namespace pixtral {
namespace {

// "layers.12.attention.wq.weight" -> "layers.*", "vision_encoder.transformer.layers.3..." ->
// "vision_encoder.transformer.layers.*": one line per group keeps the 12B model's 585 tensors
// readable.
std::string GroupOf(const std::string& name) {
  const size_t layers = name.find("layers.");
  if (layers != std::string::npos) return name.substr(0, layers) + "layers.*";
  return name.substr(0, name.find('.'));
}

int Inspect(const std::string& dir) {
  absl::StatusOr<ModelFolder> model = OpenModelFolder(dir);
  if (!model.ok()) {
    std::cerr << "inspect_model: " << model.status() << "\n";
    return 1;
  }
  const DecoderConfig& d = model->config.decoder;
  absl::PrintF("model folder %s\n", dir);
  absl::PrintF("decoder: dim %d, %d layers, %d heads (%d kv) of %d, hidden %d, vocab %d, "
               "rope theta %g\n",
               d.dim, d.n_layers, d.n_heads, d.n_kv_heads, d.head_dim, d.hidden_dim, d.vocab_size,
               d.rope_theta);
  if (model->config.vision.has_value()) {
    const VisionEncoderConfig& v = *model->config.vision;
    absl::PrintF("vision encoder: hidden %d, %d layers, %d heads, patch %d, images up to %d px, "
                 "[IMG] id %d\n",
                 v.hidden_size, v.num_hidden_layers, v.num_attention_heads, v.patch_size,
                 v.image_size, v.image_token_id);
  }
  std::map<std::string, std::pair<int, int64_t>> groups;  // tensors, parameters
  int64_t total = 0;
  for (const TensorView* tensor : model->weights.tensors()) {
    auto& [count, parameters] = groups[GroupOf(tensor->name)];
    ++count;
    parameters += tensor->num_elements();
    total += tensor->num_elements();
  }
  for (const auto& [group, stats] : groups) {
    absl::PrintF("  %-40s %4d tensors %14d parameters\n", group, stats.first, stats.second);
  }
  absl::PrintF("%d parameters in %d tensors, all present with the shapes params.json implies\n",
               total, model->weights.tensors().size());
  absl::PrintF("tokenizer: %s\n",
               model->tokenizer_path.empty() ? "none (no tekken.json)" : model->tokenizer_path);
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: inspect_model MODEL_DIR\n";
    return 2;
  }
  return pixtral::Inspect(argv[1]);
}
