#include "common/model_config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace pixtral {
namespace {

using Json = nlohmann::json;

// params.json is a few hundred bytes; a huge file is a mistake or an attack.
constexpr size_t kMaxParamsBytes = 1 << 20;

// Reads the members of one JSON object into typed fields, remembering the first error so the
// parse reads as a list of fields rather than a ladder of early returns.
class FieldReader {
 public:
  FieldReader(const Json& object, std::string prefix, std::string source)
      : object_(object), prefix_(std::move(prefix)), source_(std::move(source)) {}

  // A positive integer; `required` false keeps the default when the key is absent or null.
  void PositiveInt(const char* key, int* out, bool required = true) {
    const Json* value = Get(key, required);
    if (value == nullptr) return;
    if (!value->is_number_integer() || value->get<int64_t>() <= 0 ||
        value->get<int64_t>() > std::numeric_limits<int>::max()) {
      Fail(key, "must be a positive integer");
      return;
    }
    *out = value->get<int>();
  }

  void NonNegativeInt(const char* key, int* out) {
    const Json* value = Get(key, /*required=*/false);
    if (value == nullptr) return;
    if (!value->is_number_integer() || value->get<int64_t>() < 0 ||
        value->get<int64_t>() > std::numeric_limits<int>::max()) {
      Fail(key, "must be a non-negative integer");
      return;
    }
    *out = value->get<int>();
  }

  void PositiveNumber(const char* key, double* out, bool required = true) {
    const Json* value = Get(key, required);
    if (value == nullptr) return;
    if (!value->is_number() || !std::isfinite(value->get<double>()) || value->get<double>() <= 0) {
      Fail(key, "must be a positive number");
      return;
    }
    *out = value->get<double>();
  }

  void Bool(const char* key, bool* out) {
    const Json* value = Get(key, /*required=*/false);
    if (value == nullptr) return;
    if (!value->is_boolean()) {
      Fail(key, "must be true or false");
      return;
    }
    *out = value->get<bool>();
  }

  // Fails with `message` about `key` unless `condition` holds.
  void Check(bool condition, const char* key, absl::string_view message) {
    if (!condition) Fail(key, message);
  }

  const absl::Status& status() const { return status_; }

 private:
  const Json* Get(const char* key, bool required) {
    if (!status_.ok()) return nullptr;
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      if (required) Fail(key, "is missing");
      return nullptr;
    }
    return &*it;
  }

  void Fail(const char* key, absl::string_view message) {
    if (status_.ok()) {
      status_ = absl::InvalidArgumentError(
          absl::StrCat(source_, ": \"", prefix_, key, "\" ", message));
    }
  }

  const Json& object_;
  std::string prefix_;
  std::string source_;
  absl::Status status_;
};

absl::Status ParseDecoder(const Json& root, const std::string& source, DecoderConfig* config) {
  FieldReader r(root, "", source);
  r.PositiveInt("dim", &config->dim);
  r.PositiveInt("n_layers", &config->n_layers);
  r.PositiveInt("head_dim", &config->head_dim);
  r.PositiveInt("hidden_dim", &config->hidden_dim);
  r.PositiveInt("n_heads", &config->n_heads);
  r.PositiveInt("n_kv_heads", &config->n_kv_heads);
  r.PositiveNumber("rope_theta", &config->rope_theta, /*required=*/false);
  r.PositiveNumber("norm_eps", &config->norm_eps);
  r.PositiveInt("vocab_size", &config->vocab_size);
  int sliding_window = 0;
  r.PositiveInt("sliding_window", &sliding_window, /*required=*/false);
  if (sliding_window > 0) config->sliding_window = sliding_window;
  if (!r.status().ok()) return r.status();
  r.Check(config->n_heads % config->n_kv_heads == 0, "n_heads",
          absl::StrCat("(", config->n_heads, ") must be a multiple of n_kv_heads (",
                       config->n_kv_heads, ")"));
  r.Check(config->head_dim % 2 == 0, "head_dim", "must be even for rotary embeddings");
  return r.status();
}

absl::Status ParseVision(const Json& object, const std::string& source, int vocab_size,
                         VisionEncoderConfig* config) {
  FieldReader r(object, "vision_encoder.", source);
  r.PositiveInt("hidden_size", &config->hidden_size);
  r.PositiveInt("num_channels", &config->num_channels);
  r.PositiveInt("image_size", &config->image_size);
  r.PositiveInt("patch_size", &config->patch_size);
  r.PositiveNumber("rope_theta", &config->rope_theta, /*required=*/false);
  r.PositiveInt("intermediate_size", &config->intermediate_size);
  r.PositiveInt("num_hidden_layers", &config->num_hidden_layers);
  r.PositiveInt("num_attention_heads", &config->num_attention_heads);
  r.NonNegativeInt("image_token_id", &config->image_token_id);
  r.NonNegativeInt("image_break_token_id", &config->image_break_token_id);
  r.NonNegativeInt("image_end_token_id", &config->image_end_token_id);
  r.Bool("adapter_bias", &config->adapter_bias);
  if (!r.status().ok()) return r.status();
  r.Check(config->hidden_size % config->num_attention_heads == 0, "hidden_size",
          "must be a multiple of num_attention_heads");
  // 2D RoPE splits each head's frequency pairs between patch rows and patch columns.
  r.Check(config->hidden_size / config->num_attention_heads % 4 == 0, "num_attention_heads",
          "must leave a head size that is a multiple of 4 (2D rotary embeddings)");
  r.Check(config->image_size % config->patch_size == 0, "image_size",
          "must be a multiple of patch_size");
  const std::pair<const char*, int> special_ids[] = {
      {"image_token_id", config->image_token_id},
      {"image_break_token_id", config->image_break_token_id},
      {"image_end_token_id", config->image_end_token_id},
  };
  for (const auto& [key, id] : special_ids) {
    r.Check(id < vocab_size, key, absl::StrCat("must be below vocab_size (", vocab_size, ")"));
  }
  r.Check(config->image_token_id != config->image_break_token_id &&
              config->image_token_id != config->image_end_token_id &&
              config->image_break_token_id != config->image_end_token_id,
          "image_token_id", "image, break and end token ids must differ");
  return r.status();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source) {
  const std::string name(source);
  Json root = Json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(name, ": not valid JSON"));
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(name, ": not a JSON object"));

  ModelConfig config;
  if (absl::Status status = ParseDecoder(root, name, &config.decoder); !status.ok()) return status;
  auto vision = root.find("vision_encoder");
  if (vision != root.end() && !vision->is_null()) {
    if (!vision->is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": \"vision_encoder\" is not an object"));
    }
    config.vision.emplace();
    absl::Status status = ParseVision(*vision, name, config.decoder.vocab_size, &*config.vision);
    if (!status.ok()) return status;
  }
  return config;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string text(kMaxParamsBytes + 1, '\0');
  in.read(text.data(), text.size());
  text.resize(in.gcount());
  if (text.size() > kMaxParamsBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": larger than ", kMaxParamsBytes, " bytes"));
  }
  return ParseModelConfig(text, path);
}

}  // namespace pixtral
