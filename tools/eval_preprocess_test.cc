#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/image_processing.h"
#include "common/safetensors.h"
#include "common/testing/files.h"
#include "gtest/gtest.h"
#include "tools/eval_commands.h"

namespace pixtral {
namespace {

constexpr char kImage[] = "tests/data/images/chelsea.png";

std::string OutPath() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/pixels.safetensors";
}

TEST(EvalPreprocessTest, WritesThePixelsTensor) {
  ASSERT_EQ(RunPreprocess({"--image", kImage, "--max-image-size=256", "--out", OutPath()}), 0);

  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(OutPath());
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* pixels = (*file)->Find("pixels");
  ASSERT_NE(pixels, nullptr);
  EXPECT_EQ(pixels->dtype, DType::kF32);
  EXPECT_EQ(pixels->shape, (std::vector<int64_t>{3, 176, 256}));  // chelsea.max256's golden shape

  absl::StatusOr<PreprocessedImage> direct =
      PreprocessImage(ReadFileOrFail(kImage), {.max_image_size = 256});
  ASSERT_TRUE(direct.ok()) << direct.status();
  absl::StatusOr<std::vector<float>> written = ToFloat32(*pixels);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, direct->pixels);
}

TEST(EvalPreprocessTest, BadArgumentsFail) {
  EXPECT_NE(RunPreprocess({}), 0);
  EXPECT_NE(RunPreprocess({"--image", kImage, "--out", OutPath()}), 0);
  EXPECT_NE(RunPreprocess({"--image", kImage, "--max-image-size", "big", "--out", OutPath()}), 0);
  EXPECT_NE(
      RunPreprocess({"--image", "missing.png", "--max-image-size", "256", "--out", OutPath()}), 0);
  EXPECT_NE(RunPreprocess({"--bogus", "1"}), 0);
}

}  // namespace
}  // namespace pixtral
