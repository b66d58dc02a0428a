#include "tools/random_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/model_folder.h"
#include "common/safetensors.h"
#include "common/testing/files.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace pixtral {
namespace {

namespace fs = std::filesystem;

constexpr char kTinyDir[] = "tests/data/pixtral-tiny";

std::string TempDir(const std::string& name) {
  return (fs::path(testing::TempDir()) / name).string();
}

std::unique_ptr<SafetensorsFile> OpenOrDie(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  EXPECT_TRUE(file.ok()) << file.status();
  return file.ok() ? *std::move(file) : nullptr;
}

// name -> (dtype, shape)
std::map<std::string, std::pair<DType, std::vector<int64_t>>> Layout(const SafetensorsFile& f) {
  std::map<std::string, std::pair<DType, std::vector<int64_t>>> layout;
  for (const TensorView& t : f.tensors()) layout[t.name] = {t.dtype, t.shape};
  return layout;
}

ModelConfig TinyConfig() {
  ModelConfig config = ToyConfig();
  config.decoder.vocab_size = 2048;
  return config;
}

TEST(RandomModelTest, TinyShapeReproducesGoldenLayoutAndParams) {
  const std::string dir = TempDir("tiny");
  ASSERT_TRUE(WriteRandomModel(dir, TinyConfig(), 1, "").ok());

  std::unique_ptr<SafetensorsFile> ours = OpenOrDie(dir + "/consolidated.safetensors");
  std::unique_ptr<SafetensorsFile> golden =
      OpenOrDie(std::string(kTinyDir) + "/consolidated.safetensors");
  ASSERT_NE(ours, nullptr);
  ASSERT_NE(golden, nullptr);
  EXPECT_EQ(Layout(*ours), Layout(*golden));

  EXPECT_EQ(nlohmann::json::parse(ReadFileOrFail(dir + "/params.json")),
            nlohmann::json::parse(ReadFileOrFail(std::string(kTinyDir) + "/params.json")));
}

TEST(RandomModelTest, FolderOpensWithTokenizer) {
  const std::string dir = TempDir("toy");
  const std::string tekken = TempDir("fake_tekken.json");
  std::ofstream(tekken) << "{\"fake\": true}";
  ASSERT_TRUE(WriteRandomModel(dir, ToyConfig(), 1, tekken).ok());

  absl::StatusOr<ModelFolder> folder = OpenModelFolder(dir);
  ASSERT_TRUE(folder.ok()) << folder.status();
  EXPECT_EQ(folder->config.decoder.vocab_size, 131072);
  EXPECT_EQ(ReadFileOrFail(folder->tokenizer_path), "{\"fake\": true}");
}

TEST(RandomModelTest, LayerCountsGeneralize) {
  ModelConfig config = TinyConfig();
  config.decoder.n_layers = 3;
  config.vision->num_hidden_layers = 1;
  const std::string dir = TempDir("deeper");
  ASSERT_TRUE(WriteRandomModel(dir, config, 1, "").ok());
  std::unique_ptr<SafetensorsFile> f = OpenOrDie(dir + "/consolidated.safetensors");
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->Find("layers.2.feed_forward.w2.weight"), nullptr);
  EXPECT_EQ(f->Find("layers.3.feed_forward.w2.weight"), nullptr);
  EXPECT_NE(f->Find("vision_encoder.transformer.layers.0.attention.wq.weight"), nullptr);
  EXPECT_EQ(f->Find("vision_encoder.transformer.layers.1.attention.wq.weight"), nullptr);
}

TEST(RandomModelTest, TextOnlyModelHasNoVisionTensors) {
  ModelConfig config = TinyConfig();
  config.vision.reset();
  const std::string dir = TempDir("text_only");
  ASSERT_TRUE(WriteRandomModel(dir, config, 1, "").ok());
  std::unique_ptr<SafetensorsFile> f = OpenOrDie(dir + "/consolidated.safetensors");
  ASSERT_NE(f, nullptr);
  for (const TensorView& t : f->tensors()) EXPECT_EQ(t.name.rfind("vision", 0), std::string::npos);
  EXPECT_TRUE(OpenModelFolder(dir).ok());
}

TEST(RandomModelTest, SeedDeterminesWeights) {
  ASSERT_TRUE(WriteRandomModel(TempDir("a"), TinyConfig(), 5, "").ok());
  ASSERT_TRUE(WriteRandomModel(TempDir("b"), TinyConfig(), 5, "").ok());
  ASSERT_TRUE(WriteRandomModel(TempDir("c"), TinyConfig(), 6, "").ok());
  const std::string a = ReadFileOrFail(TempDir("a") + "/consolidated.safetensors");
  EXPECT_EQ(a, ReadFileOrFail(TempDir("b") + "/consolidated.safetensors"));
  EXPECT_NE(a, ReadFileOrFail(TempDir("c") + "/consolidated.safetensors"));
}

TEST(RandomModelTest, WeightsHaveTheDocumentedScale) {
  const std::string dir = TempDir("scale");
  ASSERT_TRUE(WriteRandomModel(dir, TinyConfig(), 3, "").ok());
  std::unique_ptr<SafetensorsFile> f = OpenOrDie(dir + "/consolidated.safetensors");
  ASSERT_NE(f, nullptr);
  auto moments = [&](const std::string& name) {
    absl::StatusOr<std::vector<float>> v = ToFloat32(*f->Find(name));
    EXPECT_TRUE(v.ok()) << v.status();
    double sum = 0, sum_sq = 0;
    for (float x : *v) sum += x;
    const double mean = sum / v->size();
    for (float x : *v) sum_sq += (x - mean) * (x - mean);
    return std::pair<double, double>(mean, std::sqrt(sum_sq / v->size()));
  };
  // output.weight: 2048 x 64, fan_in 64.
  auto [out_mean, out_sd] = moments("output.weight");
  EXPECT_NEAR(out_mean, 0.0, 0.005);
  EXPECT_NEAR(out_sd, 1.0 / 8.0, 0.125 * 0.02);
  auto [emb_mean, emb_sd] = moments("tok_embeddings.weight");
  EXPECT_NEAR(emb_sd, 1.0, 0.02);
  auto [norm_mean, norm_sd] = moments("norm.weight");
  EXPECT_NEAR(norm_mean, 1.0, 0.05);
  // patch_conv: fan_in 3 * 16 * 16.
  auto [conv_mean, conv_sd] = moments("vision_encoder.patch_conv.weight");
  EXPECT_NEAR(conv_sd, 1.0 / std::sqrt(768.0), 0.02 / std::sqrt(768.0));
}

TEST(RandomModelTest, RejectsInvalidConfigAndWritesNothing) {
  ModelConfig config = TinyConfig();
  config.decoder.n_kv_heads = 3;  // does not divide n_heads = 4
  const std::string dir = TempDir("invalid");
  absl::Status status = WriteRandomModel(dir, config, 1, "");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_FALSE(fs::exists(dir));
}

TEST(RandomModelTest, MissingTokenizerIsAnError) {
  absl::Status status = WriteRandomModel(TempDir("no_tok"), TinyConfig(), 1, TempDir("nope.json"));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
}

TEST(RandomModelTest, Pixtral12BShapes) {
  const ModelConfig config = Pixtral12BConfig();
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(ParamsJson(config));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->decoder.dim, 5120);
  EXPECT_EQ(parsed->decoder.rope_theta, 1e9);
  ASSERT_TRUE(parsed->vision.has_value());
  EXPECT_EQ(parsed->vision->num_hidden_layers, 24);
  int64_t parameters = 0;
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    parameters += n;
  }
  // Pixtral-12B-2409 has 12.68 billion parameters (25.4 GB in bf16).
  EXPECT_GT(parameters, 12'600'000'000);
  EXPECT_LT(parameters, 12'700'000'000);
}

}  // namespace
}  // namespace pixtral
