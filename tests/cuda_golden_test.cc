// PixtralModel on the CUDA backend against the pixtral-tiny goldens (Hugging Face transformers,
// float32) with golden.json's bf16 tolerances: relative Frobenius error <= 3e-2 on image features
// and logits; greedy tokens equal to the golden except where the top-2 logit margin is tiny.
// Where no GPU is visible (CI) the tests are skipped, not passed.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <vector>

#include "common/testing/compare.h"
#include "common/testing/pixtral_tiny.h"
#include "decoder/pixtral_model.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cuda/cuda_backend.h"
#include "vision_encoder/testing/golden_images.h"

namespace pixtral {
namespace {

constexpr double kBf16Tolerance = 3e-2;
// A greedy pick may differ from the golden only where the golden token's logit is within this
// fraction of the logits' RMS of the top one: bf16 rounding moves logits by about that much.
constexpr double kTinyMarginOfRms = 3e-2;

class CudaGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<kernels::Backend>> gpu = kernels::NewCudaBackend();
    if (!gpu.ok()) GTEST_SKIP() << gpu.status();
    backend_ = *std::move(gpu);
    auto model =
        PixtralModel::Load(kPixtralTinyDir, backend_.get(), {.block_size = 4, .num_blocks = 64});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_.emplace(*std::move(golden));
    golden_images_ = golden_->Images();
    images_ = ImageViews(golden_images_);
  }

  // Feeds the golden continuation token by token (teacher forcing) and checks each greedy pick:
  // equal to the golden token, or behind it by a tiny margin only.
  void ExpectGreedyMatches(absl::Span<const int32_t> prompt, absl::Span<const Image> images,
                           const std::vector<int32_t>& golden) {
    Decoder& decoder = model_->decoder();
    SequenceId seq = decoder.AddSequence();
    absl::StatusOr<std::vector<float>> logits = model_->Prefill(seq, prompt, images);
    int equal = 0;
    for (size_t i = 0; i < golden.size() && logits.ok(); ++i) {
      const std::vector<float>& l = *logits;
      const int32_t pick = std::max_element(l.begin(), l.end()) - l.begin();
      if (pick == golden[i]) {
        ++equal;
      } else {
        double square = 0;
        for (float x : l) square += double{x} * x;
        const double rms = std::sqrt(square / l.size());
        EXPECT_LE(l[pick] - l[golden[i]], kTinyMarginOfRms * rms)
            << "step " << i << ": picked " << pick << ", golden " << golden[i];
      }
      auto step = decoder.Forward({{.sequence = seq, .tokens = {&golden[i], 1}}});
      if (step.ok()) {
        *logits = (*step)[0];
      } else {
        logits = step.status();
      }
    }
    EXPECT_TRUE(logits.ok()) << logits.status();
    std::cout << "greedy: " << equal << " of " << golden.size() << " picks equal the golden\n";
    decoder.Release(seq);
  }

  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<PixtralModel> model_;
  std::optional<PixtralTinyGolden> golden_;
  std::vector<GoldenImage> golden_images_;
  std::vector<Image> images_;  // views of golden_images_
};

TEST_F(CudaGoldenTest, ImageFeaturesMatchTheGolden) {
  auto features = model_->EmbedImages(golden_->Ids("input_ids"), images_);
  ASSERT_TRUE(features.ok()) << features.status();
  const double error =
      RelativeError(kernels::ToHost(*backend_, *features), golden_->Floats("image_features"));
  EXPECT_LE(error, kBf16Tolerance);
  std::cout << "image_features: relative error " << error << "\n";
}

TEST_F(CudaGoldenTest, LogitsMatchTheGoldens) {
  struct Case {
    const char* ids;
    const char* logits;
    bool with_images;
  };
  for (const Case& c :
       {Case{"input_ids", "logits", true}, Case{"text_input_ids", "text_logits", false}}) {
    SequenceId seq = model_->decoder().AddSequence();
    const std::vector<int32_t> ids = golden_->Ids(c.ids);
    auto logits = model_->Prefill(
        seq, ids, c.with_images ? absl::MakeConstSpan(images_) : absl::Span<const Image>(),
        {.all_logits = true});
    model_->decoder().Release(seq);
    ASSERT_TRUE(logits.ok()) << logits.status();
    const std::vector<float> want = golden_->Floats(c.logits);
    ASSERT_EQ(logits->size(), want.size());
    const double error = RelativeError(*logits, want);
    EXPECT_LE(error, kBf16Tolerance) << c.logits;
    std::cout << c.logits << ": relative error " << error << "\n";
  }
}

TEST_F(CudaGoldenTest, GreedyContinuationsMatchTheGoldens) {
  ExpectGreedyMatches(golden_->Ids("input_ids"), images_, golden_->Ids("greedy_multimodal"));
  ExpectGreedyMatches(golden_->Ids("text_input_ids"), {}, golden_->Ids("greedy_text"));
}

}  // namespace
}  // namespace pixtral
