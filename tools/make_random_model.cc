// Writes a random-weight Pixtral model folder (params.json, consolidated.safetensors in bf16,
// tekken.json). See tools/random_model.h for the layout and the weights.
//
//   make_random_model --out /tmp/toy --tekken tests/data/generated/tekken.json
//   make_random_model --out /data/pixtral-12b-random --preset pixtral-12b --seed 7
//   make_random_model --out /tmp/deep --n_layers 8 --vision=false

#include <cstdint>
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "tools/random_model.h"

ABSL_FLAG(std::string, out, "", "Model folder to write (created if missing).");
ABSL_FLAG(std::string, preset, "toy", "Starting shape: toy | pixtral-12b.");
ABSL_FLAG(std::string, tekken, "", "tekken.json to copy into the folder; none if empty.");
ABSL_FLAG(uint64_t, seed, 0, "Seed of the weights.");
ABSL_FLAG(bool, vision, true, "Include the vision encoder and adapter.");
// Overrides of the preset; -1 keeps the preset's value.
ABSL_FLAG(int, dim, -1, "Decoder width.");
ABSL_FLAG(int, n_layers, -1, "Decoder layers.");
ABSL_FLAG(int, head_dim, -1, "Decoder head width.");
ABSL_FLAG(int, hidden_dim, -1, "Decoder MLP width.");
ABSL_FLAG(int, n_heads, -1, "Decoder query heads.");
ABSL_FLAG(int, n_kv_heads, -1, "Decoder key/value heads.");
ABSL_FLAG(int, vocab_size, -1, "Vocabulary size.");
ABSL_FLAG(int, vision_hidden_size, -1, "Vision encoder width.");
ABSL_FLAG(int, vision_layers, -1, "Vision encoder layers.");
ABSL_FLAG(int, vision_heads, -1, "Vision encoder heads.");
ABSL_FLAG(int, vision_intermediate_size, -1, "Vision encoder MLP width.");
ABSL_FLAG(int, image_size, -1, "Largest image side, in pixels.");

namespace pixtral {
namespace {

void Override(const absl::Flag<int>& flag, int& field) {
  if (const int value = absl::GetFlag(flag); value != -1) field = value;
}

int Main() {
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::cerr << "make_random_model: --out is required\n";
    return 2;
  }
  ModelConfig config;
  const std::string preset = absl::GetFlag(FLAGS_preset);
  if (preset == "toy") {
    config = ToyConfig();
  } else if (preset == "pixtral-12b") {
    config = Pixtral12BConfig();
  } else {
    std::cerr << "make_random_model: unknown --preset \"" << preset << "\" (toy | pixtral-12b)\n";
    return 2;
  }
  DecoderConfig& d = config.decoder;
  Override(FLAGS_dim, d.dim);
  Override(FLAGS_n_layers, d.n_layers);
  Override(FLAGS_head_dim, d.head_dim);
  Override(FLAGS_hidden_dim, d.hidden_dim);
  Override(FLAGS_n_heads, d.n_heads);
  Override(FLAGS_n_kv_heads, d.n_kv_heads);
  Override(FLAGS_vocab_size, d.vocab_size);
  if (!absl::GetFlag(FLAGS_vision)) {
    config.vision.reset();
  } else {
    VisionEncoderConfig& v = *config.vision;
    Override(FLAGS_vision_hidden_size, v.hidden_size);
    Override(FLAGS_vision_layers, v.num_hidden_layers);
    Override(FLAGS_vision_heads, v.num_attention_heads);
    Override(FLAGS_vision_intermediate_size, v.intermediate_size);
    Override(FLAGS_image_size, v.image_size);
  }

  absl::Status status =
      WriteRandomModel(out, config, absl::GetFlag(FLAGS_seed), absl::GetFlag(FLAGS_tekken));
  if (!status.ok()) {
    std::cerr << "make_random_model: " << status << "\n";
    return 1;
  }
  std::cout << "wrote " << out << "\n";
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Writes a random-weight Pixtral model folder.");
  absl::ParseCommandLine(argc, argv);
  return pixtral::Main();
}
