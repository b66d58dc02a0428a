#include "decoder/pixtral_model.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include "common/testing/compare.h"
#include "common/testing/files.h"
#include "common/testing/pixtral_tiny.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "tools/random_model.h"
#include "vision_encoder/testing/golden_images.h"

namespace pixtral {
namespace {

namespace fs = std::filesystem;

class PixtralModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model =
        PixtralModel::Load(kPixtralTinyDir, backend_.get(), {.block_size = 4, .num_blocks = 64});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_.emplace(*std::move(golden));
    golden_images_ = golden_->Images();
    ASSERT_EQ(golden_images_.size(), 2u);
    images_ = ImageViews(golden_images_);
    prompt_ = golden_->Ids("input_ids");
    text_prompt_ = golden_->Ids("text_input_ids");
  }

  // Prefill in a new sequence, which is released afterwards.
  absl::StatusOr<std::vector<float>> Run(absl::Span<const int32_t> tokens,
                                         absl::Span<const Image> images,
                                         const PrefillOptions& options) {
    SequenceId seq = model_->decoder().AddSequence();
    auto logits = model_->Prefill(seq, tokens, images, options);
    model_->decoder().Release(seq);
    return logits;
  }

  // Greedy continuation of `max_tokens` tokens, EOS not stopping it.
  std::vector<int32_t> Greedy(absl::Span<const int32_t> tokens, absl::Span<const Image> images,
                              int max_tokens) {
    Decoder& decoder = model_->decoder();
    SequenceId seq = decoder.AddSequence();
    absl::StatusOr<std::vector<float>> logits = model_->Prefill(seq, tokens, images);
    std::vector<int32_t> out;
    while (logits.ok() && std::ssize(out) < max_tokens) {
      out.push_back(std::max_element(logits->begin(), logits->end()) - logits->begin());
      auto step = decoder.Forward({{.sequence = seq, .tokens = {&out.back(), 1}}});
      if (step.ok())
        *logits = (*step)[0];
      else
        logits = step.status();
    }
    EXPECT_TRUE(logits.ok()) << logits.status();
    decoder.Release(seq);
    return out;
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> model_;
  std::optional<PixtralTinyGolden> golden_;
  std::vector<GoldenImage> golden_images_;
  std::vector<Image> images_;  // views of golden_images_
  std::vector<int32_t> prompt_, text_prompt_;
};

TEST_F(PixtralModelTest, ImageFeaturesMatchTheGolden) {
  auto features = model_->EmbedImages(prompt_, images_);
  ASSERT_TRUE(features.ok()) << features.status();
  EXPECT_LE(RelativeError(kernels::ToHost(*backend_, *features), golden_->Floats("image_features")),
            1e-4);
}

TEST_F(PixtralModelTest, MultimodalLogitsMatchTheGolden) {
  auto logits = Run(prompt_, images_, {.all_logits = true});
  ASSERT_TRUE(logits.ok()) << logits.status();
  std::vector<float> want = golden_->Floats("logits");
  ASSERT_EQ(logits->size(), want.size());
  EXPECT_LE(RelativeError(*logits, want), 1e-4);
}

TEST_F(PixtralModelTest, TextLogitsMatchTheGolden) {
  auto logits = Run(text_prompt_, {}, {.all_logits = true});
  ASSERT_TRUE(logits.ok()) << logits.status();
  std::vector<float> want = golden_->Floats("text_logits");
  ASSERT_EQ(logits->size(), want.size());
  EXPECT_LE(RelativeError(*logits, want), 1e-4);
}

TEST_F(PixtralModelTest, GreedyContinuationsMatchTheGolden) {
  EXPECT_EQ(Greedy(prompt_, images_, 12), golden_->Ids("greedy_multimodal"));
  EXPECT_EQ(Greedy(text_prompt_, {}, 12), golden_->Ids("greedy_text"));
}

// The distributed path: a vision worker encodes, the decoder adapts and prefills.
TEST_F(PixtralModelTest, PrefillFromEncoderOutputMatchesTheGolden) {
  auto encoded = model_->vision_encoder()->Encode(images_);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  const std::vector<float> encoder_rows = kernels::ToHost(*backend_, *encoded);
  SequenceId seq = model_->decoder().AddSequence();
  auto logits = model_->PrefillEncoded(seq, prompt_, encoder_rows, {.all_logits = true});
  model_->decoder().Release(seq);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LE(RelativeError(*logits, golden_->Floats("logits")), 1e-4);
}

// A decoder worker's load: no vision transformer, the same logits from received encoder output.
TEST_F(PixtralModelTest, AdapterOnlyLoadPrefillsEncoderOutputAndRefusesToEncode) {
  auto encoded = model_->vision_encoder()->Encode(images_);
  ASSERT_TRUE(encoded.ok()) << encoded.status();
  const std::vector<float> encoder_rows = kernels::ToHost(*backend_, *encoded);
  auto adapter_only = PixtralModel::Load(kPixtralTinyDir, backend_.get(), {.block_size = 4},
                                         {.vision_encoder = false});
  ASSERT_TRUE(adapter_only.ok()) << adapter_only.status();
  EXPECT_EQ((*adapter_only)->vision_encoder()->Encode(images_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  SequenceId seq = (*adapter_only)->decoder().AddSequence();
  auto logits = (*adapter_only)->PrefillEncoded(seq, prompt_, encoder_rows, {.all_logits = true});
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LE(RelativeError(*logits, golden_->Floats("logits")), 1e-4);
}

// What the decoder worker leaves out on Pixtral-12B-2409's shapes (bf16): the 24-layer vision
// transformer, 2 * (24 * (4 * 1024^2 + 3 * 1024 * 4096 + 2 * 1024) + 1024 * 3 * 16^2 + 1024)
// bytes, counted from the checkpoint's tensor list.
TEST(PixtralModelLoadTest, AdapterOnlySkipsTheVisionTransformerWeights) {
  const int64_t skipped =
      PixtralModel::SkippedWeightBytes(Pixtral12BConfig(), {.vision_encoder = false}, 2);
  EXPECT_EQ(skipped,
            2 * (24 * (4 * 1024 * 1024 + 3 * 1024 * 4096 + 2 * 1024) + 1024 * 3 * 16 * 16 + 1024));
  EXPECT_EQ(skipped, 806979584);  // 807 MB (770 MiB) of GPU memory per decoder worker
  EXPECT_EQ(PixtralModel::SkippedWeightBytes(Pixtral12BConfig(), {}, 2), 0);
}

TEST_F(PixtralModelTest, EncoderOutputMustMatchTheImageTokens) {
  std::vector<float> one_row_short((std::count(prompt_.begin(), prompt_.end(), 10) - 1) * 64, 0.0f);
  SequenceId seq = model_->decoder().AddSequence();
  auto logits = model_->PrefillEncoded(seq, prompt_, one_row_short);
  EXPECT_EQ(logits.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model_->decoder().Length(seq), 0);
  model_->decoder().Release(seq);
}

TEST_F(PixtralModelTest, ChunkedPrefillSplittingImagesEqualsOnePrefill) {
  auto whole = Run(prompt_, images_, {.all_logits = true});
  auto chunked = Run(prompt_, images_, {.chunk_tokens = 5, .all_logits = true});
  ASSERT_TRUE(whole.ok() && chunked.ok());
  EXPECT_LE(RelativeError(*chunked, *whole), 1e-6);
  auto last = Run(prompt_, images_, {.chunk_tokens = 7});
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(*last, std::vector<float>(whole->end() - last->size(), whole->end()));
}

TEST_F(PixtralModelTest, ImageTokenCountMustMatchThePatches) {
  std::vector<int32_t> missing_one = prompt_;
  missing_one.erase(std::find(missing_one.begin(), missing_one.end(), 10));
  EXPECT_EQ(Run(missing_one, images_, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Run(prompt_, {images_[0]}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Run(prompt_, images_, {}).ok());
}

TEST_F(PixtralModelTest, RejectsImagesLargerThanTheMaximum) {
  std::vector<float> big(3 * 1040 * 16, 0.0f);
  std::vector<int32_t> prompt(65 * 1, 10);
  EXPECT_EQ(Run(prompt, {Image{1040, 16, big}}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Run(prompt_, images_, {}).ok());
}

TEST_F(PixtralModelTest, RejectsTokenIdsOutsideTheVocabulary) {
  std::vector<int32_t> bad = text_prompt_;
  bad.back() = 2048;
  EXPECT_EQ(Run(bad, {}, {.chunk_tokens = 4}).status().code(), absl::StatusCode::kInvalidArgument);
  bad.back() = -1;
  EXPECT_EQ(Run(bad, {}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(model_->decoder().cache().num_free_blocks(), 64);
  EXPECT_TRUE(Run(text_prompt_, {}, {}).ok());
}

TEST_F(PixtralModelTest, PromptLongerThanTheCacheIsResourceExhausted) {
  std::vector<int32_t> long_prompt(64 * 4 + 1, 1);
  EXPECT_EQ(Run(long_prompt, {}, {.chunk_tokens = 16}).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(model_->decoder().cache().num_free_blocks(), 64);
  EXPECT_TRUE(Run(text_prompt_, {}, {}).ok());
}

TEST(PixtralModelLoadTest, TensorsThatDisagreeWithParamsAreAnError) {
  const fs::path dir = fs::path(testing::TempDir()) / "wrong-params";
  fs::create_directories(dir);
  fs::copy_file(fs::path(kPixtralTinyDir) / "consolidated.safetensors",
                dir / "consolidated.safetensors", fs::copy_options::overwrite_existing);
  std::string params = ReadFileOrFail((fs::path(kPixtralTinyDir) / "params.json").string());
  params.replace(params.find("\"hidden_dim\": 128"), 17, "\"hidden_dim\": 96");
  std::ofstream(dir / "params.json") << params;
  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  auto model = PixtralModel::Load(dir.string(), backend.get());
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(model.status().message().find("feed_forward"), std::string::npos) << model.status();
}

}  // namespace
}  // namespace pixtral
