#include "vision_encoder/encode_batcher.h"

#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "common/testing/compare.h"
#include "common/testing/pixtral_tiny.h"
#include "decoder/pixtral_model.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "vision_encoder/testing/golden_images.h"

namespace pixtral {
namespace {

class EncodeBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = PixtralModel::Load(kPixtralTinyDir, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_images_ = golden->Images();
    ASSERT_EQ(golden_images_.size(), 2u);
    images_ = ImageViews(golden_images_);
  }

  // The encoder's output for `image` alone, without the batcher.
  std::vector<float> Alone(const Image& image) {
    auto encoded = model_->vision_encoder()->Encode({image});
    EXPECT_TRUE(encoded.ok());
    return kernels::ToHost(*backend_, *encoded);
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> model_;
  std::vector<GoldenImage> golden_images_;
  std::vector<Image> images_;  // views of golden_images_
};

TEST_F(EncodeBatcherTest, ConcurrentRequestsShareBatchesAndGetTheirOwnFeatures) {
  EncodeBatcher batcher(*model_->vision_encoder(), *backend_, {});
  const std::vector<float> alone[2] = {Alone(images_[0]), Alone(images_[1])};
  constexpr int kCallers = 16;
  std::vector<std::vector<float>> got(kCallers);
  absl::Barrier start(kCallers);
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      start.Block();
      auto features = batcher.Encode({images_[i % 2]});
      ASSERT_TRUE(features.ok()) << features.status();
      got[i] = *std::move(features);
    });
  }
  for (std::thread& t : callers) t.join();
  for (int i = 0; i < kCallers; ++i) EXPECT_LE(MaxAbsDiff(got[i], alone[i % 2]), 1e-5) << i;
  EXPECT_LT(batcher.encoder_calls(), kCallers);
}

TEST_F(EncodeBatcherTest, SeveralImagesInOneRequestKeepTheirOrder) {
  EncodeBatcher batcher(*model_->vision_encoder(), *backend_, {});
  auto both = batcher.Encode(images_);
  ASSERT_TRUE(both.ok());
  std::vector<float> want = Alone(images_[0]);
  const std::vector<float> second = Alone(images_[1]);
  want.insert(want.end(), second.begin(), second.end());
  EXPECT_LE(MaxAbsDiff(*both, want), 1e-5);
}

TEST_F(EncodeBatcherTest, InvalidImagesFailAloneBeforeQueueing) {
  EncodeBatcher batcher(*model_->vision_encoder(), *backend_, {});
  std::vector<float> pixels(3 * 20 * 16, 0.0f);
  const Image not_whole_patches{20, 16, pixels};
  EXPECT_EQ(batcher.Encode({not_whole_patches}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(batcher.encoder_calls(), 0);
  EXPECT_TRUE(batcher.Encode({images_[0]}).ok());
  EXPECT_TRUE(batcher.Encode({})->empty());
}

}  // namespace
}  // namespace pixtral
