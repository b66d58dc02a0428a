#include "common/model_config.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

// params.json of mistralai/Pixtral-12B-2409 as published (no image_break/end ids: defaults).
constexpr char kPixtral12B[] = R"({
  "dim": 5120, "n_layers": 40, "head_dim": 128, "hidden_dim": 14336, "n_heads": 32,
  "n_kv_heads": 8, "rope_theta": 1000000000.0, "norm_eps": 1e-05, "vocab_size": 131072,
  "vision_encoder": {"hidden_size": 1024, "num_channels": 3, "image_size": 1024,
    "patch_size": 16, "rope_theta": 10000.0, "intermediate_size": 4096,
    "num_hidden_layers": 24, "num_attention_heads": 16, "image_token_id": 10}
})";

constexpr char kTextOnly[] = R"({"dim": 64, "n_layers": 2, "head_dim": 16, "hidden_dim": 128,
  "n_heads": 4, "n_kv_heads": 2, "norm_eps": 1e-5, "vocab_size": 2048})";

absl::Status ErrorFor(const std::string& json) { return ParseModelConfig(json).status(); }

// kTextOnly with one key's value replaced (or the key removed when `value` is empty).
std::string TextOnlyWith(const std::string& key, const std::string& value) {
  std::string json = kTextOnly;
  const size_t at = json.find("\"" + key + "\"");
  const size_t end = json.find_first_of(",}", at);
  json.replace(at, end - at, value.empty() ? "\"unused\": 0" : "\"" + key + "\": " + value);
  return json;
}

TEST(ModelConfigTest, ParsesPixtral12B) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kPixtral12B);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->decoder.dim, 5120);
  EXPECT_EQ(config->decoder.n_layers, 40);
  EXPECT_EQ(config->decoder.head_dim, 128);
  EXPECT_EQ(config->decoder.hidden_dim, 14336);
  EXPECT_EQ(config->decoder.n_heads, 32);
  EXPECT_EQ(config->decoder.n_kv_heads, 8);
  EXPECT_EQ(config->decoder.rope_theta, 1e9);
  EXPECT_EQ(config->decoder.norm_eps, 1e-5);
  EXPECT_EQ(config->decoder.vocab_size, 131072);
  EXPECT_FALSE(config->decoder.sliding_window.has_value());
  ASSERT_TRUE(config->vision.has_value());
  EXPECT_EQ(config->vision->hidden_size, 1024);
  EXPECT_EQ(config->vision->head_dim(), 64);
  EXPECT_EQ(config->vision->max_patches_per_side(), 64);
  EXPECT_EQ(config->vision->intermediate_size, 4096);
  EXPECT_EQ(config->vision->num_hidden_layers, 24);
  EXPECT_EQ(config->vision->rope_theta, 1e4);
  EXPECT_EQ(config->vision->image_token_id, 10);
  EXPECT_EQ(config->vision->image_break_token_id, 12);
  EXPECT_EQ(config->vision->image_end_token_id, 13);
  EXPECT_TRUE(config->vision->adapter_bias);
}

TEST(ModelConfigTest, LoadsTheTinyModel) {
  absl::StatusOr<ModelConfig> config = LoadModelConfig("tests/data/pixtral-tiny/params.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->decoder.dim, 64);
  EXPECT_EQ(config->decoder.rope_theta, 1e6);
  ASSERT_TRUE(config->vision.has_value());
  EXPECT_EQ(config->vision->num_hidden_layers, 2);
}

TEST(ModelConfigTest, TextOnlyModelHasNoVision) {
  absl::StatusOr<ModelConfig> config = ParseModelConfig(kTextOnly);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_FALSE(config->vision.has_value());
  EXPECT_EQ(config->decoder.rope_theta, 1e6);  // mistral-inference's default
}

TEST(ModelConfigTest, UnknownKeysAndNullSlidingWindowAreIgnored) {
  std::string json = kTextOnly;
  json.insert(1, R"("max_batch_size": 8, "lora": null, "sliding_window": null, "moe": {},)");
  EXPECT_TRUE(ParseModelConfig(json).ok());
}

TEST(ModelConfigTest, SlidingWindowIsRead) {
  std::string json = kTextOnly;
  json.insert(1, R"("sliding_window": 4096,)");
  EXPECT_EQ(ParseModelConfig(json)->decoder.sliding_window, 4096);
}

TEST(ModelConfigTest, MissingKeyIsNamed) {
  for (const char* key :
       {"dim", "n_layers", "head_dim", "hidden_dim", "n_heads", "n_kv_heads", "norm_eps",
        "vocab_size"}) {
    absl::Status status = ErrorFor(TextOnlyWith(key, ""));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << key;
    EXPECT_THAT(status.message(), HasSubstr(std::string("\"") + key + "\" is missing"));
  }
}

TEST(ModelConfigTest, WrongTypesAndRangesAreErrors) {
  EXPECT_THAT(ErrorFor(TextOnlyWith("dim", "\"64\"")).message(), HasSubstr("\"dim\""));
  EXPECT_THAT(ErrorFor(TextOnlyWith("dim", "64.5")).message(), HasSubstr("positive integer"));
  EXPECT_THAT(ErrorFor(TextOnlyWith("dim", "0")).message(), HasSubstr("positive integer"));
  EXPECT_THAT(ErrorFor(TextOnlyWith("n_layers", "-2")).message(), HasSubstr("n_layers"));
  EXPECT_THAT(ErrorFor(TextOnlyWith("vocab_size", "99999999999")).message(),
              HasSubstr("vocab_size"));
  EXPECT_THAT(ErrorFor(TextOnlyWith("norm_eps", "0")).message(), HasSubstr("positive number"));
  EXPECT_THAT(ErrorFor(TextOnlyWith("norm_eps", "true")).message(), HasSubstr("norm_eps"));
}

TEST(ModelConfigTest, InconsistentShapesAreErrors) {
  EXPECT_THAT(ErrorFor(TextOnlyWith("n_kv_heads", "3")).message(),
              HasSubstr("multiple of n_kv_heads"));
  EXPECT_THAT(ErrorFor(TextOnlyWith("head_dim", "15")).message(), HasSubstr("even"));
}

TEST(ModelConfigTest, BadVisionSectionsAreErrors) {
  std::string pixtral = kPixtral12B;
  auto with = [&](const std::string& from, const std::string& to) {
    std::string json = pixtral;
    json.replace(json.find(from), from.size(), to);
    return ErrorFor(json);
  };
  EXPECT_THAT(with("\"num_attention_heads\": 16", "\"num_attention_heads\": 24").message(),
              HasSubstr("multiple of num_attention_heads"));
  EXPECT_THAT(with("\"patch_size\": 16", "\"patch_size\": 24").message(),
              HasSubstr("multiple of patch_size"));
  EXPECT_THAT(with("\"image_token_id\": 10", "\"image_token_id\": 200000").message(),
              HasSubstr("below vocab_size"));
  EXPECT_THAT(with("\"image_token_id\": 10", "\"image_token_id\": 12").message(),
              HasSubstr("must differ"));
  EXPECT_THAT(with("\"hidden_size\": 1024,", "").message(),
              HasSubstr("\"vision_encoder.hidden_size\" is missing"));
  EXPECT_THAT(with("\"vision_encoder\": {", "\"vision_encoder\": [{").message(), HasSubstr("JSON"));
}

TEST(ModelConfigTest, NotJsonIsAnError) {
  EXPECT_THAT(ErrorFor("").message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(ErrorFor("{\"dim\": ").message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(ErrorFor("[]").message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(ErrorFor(std::string(100000, '[')).message(), HasSubstr("JSON"));
}

TEST(ModelConfigTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadModelConfig("/nonexistent/params.json").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pixtral
