#include "vision_encoder/encode_batcher.h"

#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "absl/synchronization/barrier.h"
#include "common/safetensors.h"
#include "decoder/pixtral_model.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {
namespace {

constexpr char kModelDir[] = "tests/data/pixtral-tiny";

class EncodeBatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = PixtralModel::Load(kModelDir, backend_.get());
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    auto golden = SafetensorsFile::Open(std::string(kModelDir) + "/golden.safetensors");
    ASSERT_TRUE(golden.ok());
    for (const char* name : {"pixel_values_0", "pixel_values_1"}) {
      const TensorView* view = (*golden)->Find(name);
      pixels_.push_back(*ToFloat32(*view));
      images_.push_back({view->shape[1], view->shape[2], pixels_.back()});
    }
  }

  // The encoder's output for `image` alone, without the batcher.
  std::vector<float> Alone(const Image& image) {
    auto encoded = model_->vision_encoder()->Encode({image});
    EXPECT_TRUE(encoded.ok());
    return kernels::ToHost(*backend_, *encoded);
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> model_;
  std::vector<std::vector<float>> pixels_;
  std::vector<Image> images_;
};

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = a.size() == b.size() ? 0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i)
    worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

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
