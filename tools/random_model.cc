#include "tools/random_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "common/model_folder.h"
#include "common/safetensors.h"
#include "common/splitmix64.h"
#include "nlohmann/json.hpp"

namespace pixtral {
namespace {

// Elements generated per write; 4 MiB of bf16.
constexpr int64_t kChunkElements = int64_t{1} << 21;

// How a tensor's values are drawn: uniform with this mean and standard deviation.
struct Init {
  double mean;
  double stddev;
};

Init InitFor(const TensorSpec& spec) {
  const std::string& name = spec.name;
  if (absl::EndsWith(name, "norm.weight") || absl::EndsWith(name, "ln_pre.weight")) {
    return {1.0, 0.1};
  }
  if (absl::EndsWith(name, ".bias")) return {0.0, 0.1};
  if (name == "tok_embeddings.weight") return {0.0, 1.0};
  int64_t fan_in = 1;
  for (size_t i = 1; i < spec.shape.size(); ++i) fan_in *= spec.shape[i];
  return {0.0, 1.0 / std::sqrt(static_cast<double>(fan_in))};
}

// FNV-1a, to give each tensor name its own stream.
uint64_t HashName(const std::string& name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

absl::Status WriteTensor(const TensorSpec& spec, uint64_t seed, SafetensorsWriter& writer) {
  const Init init = InitFor(spec);
  // A uniform on [mean - a, mean + a] has standard deviation a / sqrt(3).
  const double half_width = init.stddev * std::sqrt(3.0);
  SplitMix64 rng(HashName(spec.name) ^ SplitMix64(seed).Next());
  int64_t remaining = 1;
  for (int64_t d : spec.shape) remaining *= d;
  std::vector<uint16_t> chunk;
  while (remaining > 0) {
    chunk.resize(std::min(remaining, kChunkElements));
    for (uint16_t& v : chunk) {
      v = FloatToBf16(static_cast<float>(init.mean + half_width * (2.0 * rng.Uniform() - 1.0)));
    }
    if (absl::Status s = writer.WriteData(AsBytes(chunk)); !s.ok()) return s;
    remaining -= static_cast<int64_t>(chunk.size());
  }
  return absl::OkStatus();
}

}  // namespace

ModelConfig ToyConfig() {
  ModelConfig config;
  DecoderConfig& d = config.decoder;
  d.dim = 64;
  d.n_layers = 2;
  d.head_dim = 16;
  d.hidden_dim = 128;
  d.n_heads = 4;
  d.n_kv_heads = 2;
  d.rope_theta = 1e6;
  d.norm_eps = 1e-5;
  d.vocab_size = 131072;
  VisionEncoderConfig& v = config.vision.emplace();
  v.hidden_size = 64;
  v.num_channels = 3;
  v.image_size = 1024;
  v.patch_size = 16;
  v.rope_theta = 1e4;
  v.intermediate_size = 128;
  v.num_hidden_layers = 2;
  v.num_attention_heads = 4;
  return config;
}

ModelConfig Pixtral12BConfig() {
  ModelConfig config;
  DecoderConfig& d = config.decoder;
  d.dim = 5120;
  d.n_layers = 40;
  d.head_dim = 128;
  d.hidden_dim = 14336;
  d.n_heads = 32;
  d.n_kv_heads = 8;
  d.rope_theta = 1e9;
  d.norm_eps = 1e-5;
  d.vocab_size = 131072;
  VisionEncoderConfig& v = config.vision.emplace();
  v.hidden_size = 1024;
  v.num_channels = 3;
  v.image_size = 1024;
  v.patch_size = 16;
  v.rope_theta = 1e4;
  v.intermediate_size = 4096;
  v.num_hidden_layers = 24;
  v.num_attention_heads = 16;
  return config;
}

std::string ParamsJson(const ModelConfig& config) {
  const DecoderConfig& d = config.decoder;
  nlohmann::ordered_json j = {
      {"dim", d.dim},
      {"n_layers", d.n_layers},
      {"head_dim", d.head_dim},
      {"hidden_dim", d.hidden_dim},
      {"n_heads", d.n_heads},
      {"n_kv_heads", d.n_kv_heads},
      {"rope_theta", d.rope_theta},
      {"norm_eps", d.norm_eps},
      {"vocab_size", d.vocab_size},
  };
  if (d.sliding_window.has_value()) j["sliding_window"] = *d.sliding_window;
  if (config.vision.has_value()) {
    const VisionEncoderConfig& v = *config.vision;
    j["vision_encoder"] = {
        {"hidden_size", v.hidden_size},
        {"num_channels", v.num_channels},
        {"image_size", v.image_size},
        {"patch_size", v.patch_size},
        {"rope_theta", v.rope_theta},
        {"intermediate_size", v.intermediate_size},
        {"num_hidden_layers", v.num_hidden_layers},
        {"num_attention_heads", v.num_attention_heads},
        {"image_token_id", v.image_token_id},
        {"image_break_token_id", v.image_break_token_id},
        {"image_end_token_id", v.image_end_token_id},
        {"adapter_bias", v.adapter_bias},
    };
  }
  return j.dump(4) + "\n";
}

absl::Status WriteRandomModel(const std::string& dir, const ModelConfig& config, uint64_t seed,
                              const std::string& tekken_path) {
  // The project's params.json parser is the judge of what a valid shape is.
  const std::string params_json = ParamsJson(config);
  if (absl::StatusOr<ModelConfig> parsed = ParseModelConfig(params_json); !parsed.ok()) {
    return parsed.status();
  }
  namespace fs = std::filesystem;
  std::error_code error;
  fs::create_directories(dir, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", error.message()));
  }
  if (!tekken_path.empty()) {
    fs::copy_file(tekken_path, fs::path(dir) / "tekken.json", fs::copy_options::overwrite_existing,
                  error);
    if (error) {
      return absl::NotFoundError(
          absl::StrCat("cannot copy ", tekken_path, " to ", dir, ": ", error.message()));
    }
  }
  {
    const std::string params_path = (fs::path(dir) / "params.json").string();
    std::ofstream params(params_path);
    params << params_json;
    if (!params.good()) return absl::DataLossError(absl::StrCat(params_path, ": write failed"));
  }

  const std::vector<TensorSpec> specs = ExpectedTensors(config);
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create((fs::path(dir) / "consolidated.safetensors").string(), specs);
  if (!writer.ok()) return writer.status();
  for (const TensorSpec& spec : specs) {
    if (absl::Status s = WriteTensor(spec, seed, **writer); !s.ok()) return s;
  }
  return (*writer)->Close();
}

}  // namespace pixtral
