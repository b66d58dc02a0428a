// Random-weight Pixtral model folders, for tests, demos and benchmarks without the real weights.
//
// A folder made here has the real Pixtral-12B-2409 layout: params.json, consolidated.safetensors
// (bf16, Mistral tensor names: "layers.N.attention.wq.weight", "vision_encoder.transformer...",
// "vision_language_adapter.w_in.weight", ...) and optionally a copy of tekken.json, so every
// loader in the project reads it exactly as it reads the real model.
//
//   ModelConfig config = ToyConfig();
//   config.decoder.n_layers = 3;
//   absl::Status s = WriteRandomModel("/tmp/model", config, /*seed=*/1, "/path/to/tekken.json");
//
// Weights are deterministic from the seed and scaled to keep activations finite through any
// depth: matrices uniform with standard deviation 1/sqrt(fan_in), embeddings with deviation 1,
// norm weights 1 +- 0.1-deviation noise, biases 0.1-deviation noise. Each tensor draws from its
// own SplitMix64 stream, seeded from the model seed and the tensor's name, so a tensor's values
// do not depend on which other tensors the shape has. Tensors are generated and written in
// chunks; the 25 GB Pixtral-12B shapes never sit in memory.

#ifndef PIXTRAL_TOOLS_RANDOM_MODEL_H_
#define PIXTRAL_TOOLS_RANDOM_MODEL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "common/model_config.h"

namespace pixtral {

// The pixtral-tiny golden model's shapes (2 layers of width 64) with tekken's 131072-token
// vocabulary, so the real tokenizer works with it.
ModelConfig ToyConfig();

// Pixtral-12B-2409.
ModelConfig Pixtral12BConfig();

// params.json text for `config`.
std::string ParamsJson(const ModelConfig& config);

// Writes `dir`/params.json and `dir`/consolidated.safetensors (the tensors of ExpectedTensors),
// creating `dir` if needed, and copies `tekken_path` to `dir`/tekken.json unless it is empty.
// A config that params.json parsing would reject is INVALID_ARGUMENT, and nothing is written.
absl::Status WriteRandomModel(const std::string& dir, const ModelConfig& config, uint64_t seed,
                              const std::string& tekken_path);

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_RANDOM_MODEL_H_
