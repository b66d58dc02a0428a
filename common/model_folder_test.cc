#include "common/model_folder.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kTinyDir[] = "tests/data/pixtral-tiny";

// A writable copy of the tiny model folder, for tests that break it.
std::string CopyOfTinyModel(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const fs::path dir = fs::path(tmp != nullptr ? tmp : "/tmp") / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(fs::path(kTinyDir) / "params.json", dir / "params.json");
  fs::copy_file(fs::path(kTinyDir) / "consolidated.safetensors", dir / "consolidated.safetensors");
  return dir;
}

// Rewrites the folder's weights with `edit` applied to the list of tensors.
template <typename Edit>
void RewriteWeights(const std::string& dir, Edit edit) {
  auto original = SafetensorsFile::Open(dir + "/consolidated.safetensors");
  ASSERT_TRUE(original.ok());
  std::vector<TensorToWrite> tensors;
  for (const TensorView& t : (*original)->tensors()) {
    tensors.push_back({{t.name, t.dtype, t.shape}, t.bytes});
  }
  edit(&tensors);
  ASSERT_TRUE(WriteSafetensors(dir + "/rewritten.safetensors", tensors).ok());
  fs::rename(dir + "/rewritten.safetensors", dir + "/consolidated.safetensors");
}

TEST(ModelFolderTest, OpensTheTinyModel) {
  absl::StatusOr<ModelFolder> model = OpenModelFolder(kTinyDir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->config.decoder.n_layers, 2);
  EXPECT_EQ(model->weights.tensors().size(), 45u);
  EXPECT_NE(model->weights.Find("layers.1.feed_forward.w2.weight"), nullptr);
  EXPECT_TRUE(model->tokenizer_path.empty());  // the tiny golden model ships no tekken.json
}

TEST(ModelFolderTest, ExpectedTensorsOfPixtral12B) {
  ModelConfig config;
  config.decoder = {.dim = 5120,
                    .n_layers = 40,
                    .head_dim = 128,
                    .hidden_dim = 14336,
                    .n_heads = 32,
                    .n_kv_heads = 8,
                    .norm_eps = 1e-5,
                    .vocab_size = 131072};
  config.vision = VisionEncoderConfig{.hidden_size = 1024,
                                      .num_channels = 3,
                                      .image_size = 1024,
                                      .patch_size = 16,
                                      .intermediate_size = 4096,
                                      .num_hidden_layers = 24,
                                      .num_attention_heads = 16};
  std::vector<TensorSpec> specs = ExpectedTensors(config);
  // 3 + 40*9 decoder, 2 + 24*9 vision, 4 adapter.
  EXPECT_EQ(specs.size(), 3u + 360 + 2 + 216 + 4);
  int64_t parameters = 0;
  for (const TensorSpec& spec : specs) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    parameters += n;
  }
  // Pixtral-12B-2409: 12.7B parameters (25.4 GB of bf16 weights).
  EXPECT_NEAR(parameters / 1e9, 12.68, 0.01);
}

TEST(ModelFolderTest, FindsTokenizerWhenPresent) {
  const std::string dir = CopyOfTinyModel("with_tokenizer");
  std::ofstream(dir + "/tekken.json") << "{}";
  absl::StatusOr<ModelFolder> model = OpenModelFolder(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->tokenizer_path, dir + "/tekken.json");
}

TEST(ModelFolderTest, ShardedWeightsLoad) {
  const std::string dir = CopyOfTinyModel("sharded");
  {
    auto whole = SafetensorsFile::Open(dir + "/consolidated.safetensors");
    ASSERT_TRUE(whole.ok());
    std::vector<TensorToWrite> first, second;
    for (const TensorView& t : (*whole)->tensors()) {
      (t.name.rfind("vision", 0) == 0 ? second : first)
          .push_back({{t.name, t.dtype, t.shape}, t.bytes});
    }
    ASSERT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors", first).ok());
    ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors", second).ok());
  }
  fs::remove(dir + "/consolidated.safetensors");
  absl::StatusOr<ModelFolder> model = OpenModelFolder(dir);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->weights.tensors().size(), 45u);
}

TEST(ModelFolderTest, MissingPiecesAreErrors) {
  EXPECT_EQ(OpenModelFolder("/nonexistent/model").status().code(), absl::StatusCode::kNotFound);

  const std::string no_params = CopyOfTinyModel("no_params");
  fs::remove(no_params + "/params.json");
  EXPECT_THAT(OpenModelFolder(no_params).status().message(), HasSubstr("params.json"));

  const std::string no_weights = CopyOfTinyModel("no_weights");
  fs::remove(no_weights + "/consolidated.safetensors");
  EXPECT_THAT(OpenModelFolder(no_weights).status().message(), HasSubstr("no *.safetensors"));
}

TEST(ModelFolderTest, MissingTensorIsNamed) {
  const std::string dir = CopyOfTinyModel("missing_tensor");
  RewriteWeights(dir, [](std::vector<TensorToWrite>* tensors) {
    std::erase_if(*tensors, [](const TensorToWrite& t) {
      return t.spec.name == "layers.1.attention.wk.weight";
    });
  });
  absl::Status status = OpenModelFolder(dir).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("lack tensor \"layers.1.attention.wk.weight\""));
}

TEST(ModelFolderTest, ParamsDisagreeingWithWeightsIsNamed) {
  const std::string dir = CopyOfTinyModel("wrong_params");
  std::string params = ReadFileOrFail(dir + "/params.json");
  params.replace(params.find("\"n_kv_heads\": 2"), 15, "\"n_kv_heads\": 4");
  std::ofstream(dir + "/params.json") << params;
  absl::Status status = OpenModelFolder(dir).status();
  EXPECT_THAT(status.message(), HasSubstr("layers.0.attention.wk.weight"));
  EXPECT_THAT(status.message(), HasSubstr("params.json implies [64,64]"));
}

TEST(ModelFolderTest, ExtraLayerIsAnError) {
  const std::string dir = CopyOfTinyModel("extra_tensor");
  const std::vector<uint16_t> norm(64, 0x3f80);
  RewriteWeights(dir, [&](std::vector<TensorToWrite>* tensors) {
    tensors->push_back({{"layers.2.ffn_norm.weight", DType::kBF16, {64}}, AsBytes(norm)});
  });
  EXPECT_THAT(OpenModelFolder(dir).status().message(),
              HasSubstr("\"layers.2.ffn_norm.weight\" that params.json does not describe"));
}

TEST(ModelFolderTest, IntegerWeightsAreAnError) {
  const std::string dir = CopyOfTinyModel("int_weights");
  const std::vector<int32_t> norm(64, 1);
  RewriteWeights(dir, [&](std::vector<TensorToWrite>* tensors) {
    for (TensorToWrite& t : *tensors) {
      if (t.spec.name == "norm.weight") t = {{"norm.weight", DType::kI32, {64}}, AsBytes(norm)};
    }
  });
  EXPECT_THAT(OpenModelFolder(dir).status().message(), HasSubstr("not a floating-point type"));
}

}  // namespace
}  // namespace pixtral
