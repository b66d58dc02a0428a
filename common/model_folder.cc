#include "common/model_folder.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pixtral {
namespace {

namespace fs = std::filesystem;

void AddLinear(const std::string& prefix, int64_t out, int64_t in, std::vector<TensorSpec>* specs) {
  specs->push_back({prefix + ".weight", DType::kBF16, {out, in}});
}

void AddNorm(const std::string& name, int64_t dim, std::vector<TensorSpec>* specs) {
  specs->push_back({name + ".weight", DType::kBF16, {dim}});
}

// attention_norm, wq/wk/wv/wo, ffn_norm and the SwiGLU w1/w2/w3 of one pre-norm block.
void AddBlock(const std::string& prefix, int64_t dim, int64_t q_dim, int64_t kv_dim, int64_t hidden,
              std::vector<TensorSpec>* specs) {
  AddNorm(prefix + ".attention_norm", dim, specs);
  AddLinear(prefix + ".attention.wq", q_dim, dim, specs);
  AddLinear(prefix + ".attention.wk", kv_dim, dim, specs);
  AddLinear(prefix + ".attention.wv", kv_dim, dim, specs);
  AddLinear(prefix + ".attention.wo", dim, q_dim, specs);
  AddNorm(prefix + ".ffn_norm", dim, specs);
  AddLinear(prefix + ".feed_forward.w1", hidden, dim, specs);
  AddLinear(prefix + ".feed_forward.w2", dim, hidden, specs);
  AddLinear(prefix + ".feed_forward.w3", hidden, dim, specs);
}

bool IsFloatingPoint(DType dtype) {
  return dtype == DType::kBF16 || dtype == DType::kF16 || dtype == DType::kF32;
}

absl::StatusOr<std::vector<std::string>> FindWeightFiles(const std::string& dir) {
  const fs::path consolidated = fs::path(dir) / "consolidated.safetensors";
  std::error_code ec;
  if (fs::is_regular_file(consolidated, ec)) return std::vector<std::string>{consolidated};
  std::vector<std::string> shards;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".safetensors") shards.push_back(entry.path());
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir, ": cannot list: ", ec.message()));
  if (shards.empty()) return absl::NotFoundError(absl::StrCat(dir, ": no *.safetensors weights"));
  std::sort(shards.begin(), shards.end());
  return shards;
}

}  // namespace

std::vector<TensorSpec> ExpectedTensors(const ModelConfig& config) {
  std::vector<TensorSpec> specs;
  const DecoderConfig& d = config.decoder;
  specs.push_back({"tok_embeddings.weight", DType::kBF16, {d.vocab_size, d.dim}});
  for (int i = 0; i < d.n_layers; ++i) {
    AddBlock(absl::StrCat("layers.", i), d.dim, int64_t{d.n_heads} * d.head_dim,
             int64_t{d.n_kv_heads} * d.head_dim, d.hidden_dim, &specs);
  }
  AddNorm("norm", d.dim, &specs);
  AddLinear("output", d.vocab_size, d.dim, &specs);

  if (config.vision.has_value()) {
    const VisionEncoderConfig& v = *config.vision;
    specs.push_back({"vision_encoder.patch_conv.weight",
                     DType::kBF16,
                     {v.hidden_size, v.num_channels, v.patch_size, v.patch_size}});
    AddNorm("vision_encoder.ln_pre", v.hidden_size, &specs);
    for (int i = 0; i < v.num_hidden_layers; ++i) {
      AddBlock(absl::StrCat("vision_encoder.transformer.layers.", i), v.hidden_size, v.hidden_size,
               v.hidden_size, v.intermediate_size, &specs);
    }
    AddLinear("vision_language_adapter.w_in", d.dim, v.hidden_size, &specs);
    AddLinear("vision_language_adapter.w_out", d.dim, d.dim, &specs);
    if (v.adapter_bias) {
      specs.push_back({"vision_language_adapter.w_in.bias", DType::kBF16, {d.dim}});
      specs.push_back({"vision_language_adapter.w_out.bias", DType::kBF16, {d.dim}});
    }
  }
  return specs;
}

absl::Status CheckWeights(const ModelConfig& config, const SafetensorsCheckpoint& weights) {
  absl::flat_hash_set<std::string> expected_names;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    expected_names.insert(spec.name);
    const TensorView* tensor = weights.Find(spec.name);
    if (tensor == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("weights lack tensor \"", spec.name, "\" that params.json implies"));
    }
    if (tensor->shape != spec.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor \"", spec.name, "\" has shape [", absl::StrJoin(tensor->shape, ","),
          "] but params.json implies [", absl::StrJoin(spec.shape, ","), "]"));
    }
    if (!IsFloatingPoint(tensor->dtype)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", spec.name, "\" is ",
                                                     DTypeName(tensor->dtype),
                                                     ", not a floating-point type"));
    }
  }
  for (const TensorView* tensor : weights.tensors()) {
    if (!expected_names.contains(tensor->name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "weights hold tensor \"", tensor->name, "\" that params.json does not describe"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelFolder> OpenModelFolder(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat(dir, ": not a model folder (no such directory)"));
  }
  absl::StatusOr<ModelConfig> config = LoadModelConfig((fs::path(dir) / "params.json").string());
  if (!config.ok()) return config.status();
  absl::StatusOr<std::vector<std::string>> files = FindWeightFiles(dir);
  if (!files.ok()) return files.status();
  absl::StatusOr<SafetensorsCheckpoint> weights = SafetensorsCheckpoint::Open(*files);
  if (!weights.ok()) return weights.status();
  if (absl::Status status = CheckWeights(*config, *weights); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": ", status.message()));
  }
  ModelFolder folder{dir, *std::move(config), *std::move(weights), ""};
  const fs::path tokenizer = fs::path(dir) / "tekken.json";
  if (fs::is_regular_file(tokenizer, ec)) folder.tokenizer_path = tokenizer.string();
  return folder;
}

}  // namespace pixtral
