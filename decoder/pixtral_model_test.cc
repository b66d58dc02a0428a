#include "decoder/pixtral_model.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <vector>

#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {
namespace {

namespace fs = std::filesystem;

constexpr char kModelDir[] = "tests/data/pixtral-tiny";

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  return std::sqrt(diff / norm);
}

class PixtralModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = PixtralModel::Load(kModelDir, backend_.get(), {.block_size = 4, .num_blocks = 64});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    auto golden = SafetensorsFile::Open(std::string(kModelDir) + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = *std::move(golden);
    for (const char* name : {"pixel_values_0", "pixel_values_1"}) {
      const TensorView* view = golden_->Find(name);
      ASSERT_NE(view, nullptr);
      pixels_.push_back(*ToFloat32(*view));
      images_.push_back({view->shape[1], view->shape[2], pixels_.back()});
    }
    prompt_ = Ids("input_ids");
    text_prompt_ = Ids("text_input_ids");
  }

  std::vector<int32_t> Ids(const char* name) {
    std::vector<int64_t> wide = *ToInt64(*golden_->Find(name));
    return std::vector<int32_t>(wide.begin(), wide.end());
  }
  std::vector<float> Golden(const char* name) { return *ToFloat32(*golden_->Find(name)); }

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
  std::unique_ptr<SafetensorsFile> golden_;
  std::vector<std::vector<float>> pixels_;
  std::vector<Image> images_;
  std::vector<int32_t> prompt_, text_prompt_;
};

TEST_F(PixtralModelTest, ImageFeaturesMatchTheGolden) {
  auto features = model_->EmbedImages(prompt_, images_);
  ASSERT_TRUE(features.ok()) << features.status();
  EXPECT_LE(RelativeError(kernels::ToHost(*backend_, *features), Golden("image_features")), 1e-4);
}

TEST_F(PixtralModelTest, MultimodalLogitsMatchTheGolden) {
  auto logits = Run(prompt_, images_, {.all_logits = true});
  ASSERT_TRUE(logits.ok()) << logits.status();
  std::vector<float> want = Golden("logits");
  ASSERT_EQ(logits->size(), want.size());
  EXPECT_LE(RelativeError(*logits, want), 1e-4);
}

TEST_F(PixtralModelTest, TextLogitsMatchTheGolden) {
  auto logits = Run(text_prompt_, {}, {.all_logits = true});
  ASSERT_TRUE(logits.ok()) << logits.status();
  std::vector<float> want = Golden("text_logits");
  ASSERT_EQ(logits->size(), want.size());
  EXPECT_LE(RelativeError(*logits, want), 1e-4);
}

TEST_F(PixtralModelTest, GreedyContinuationsMatchTheGolden) {
  EXPECT_EQ(Greedy(prompt_, images_, 12), Ids("greedy_multimodal"));
  EXPECT_EQ(Greedy(text_prompt_, {}, 12), Ids("greedy_text"));
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
  fs::copy_file(fs::path(kModelDir) / "consolidated.safetensors", dir / "consolidated.safetensors",
                fs::copy_options::overwrite_existing);
  std::ifstream in(fs::path(kModelDir) / "params.json");
  std::string params((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
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
