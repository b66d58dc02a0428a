#include "common/testing/pixtral_tiny.h"

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

TEST(PixtralTinyGoldenTest, GivesThePromptAndItsTwoImages) {
  absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
  ASSERT_TRUE(golden.ok()) << golden.status();
  std::vector<GoldenImage> images = golden->Images();
  ASSERT_EQ(images.size(), 2u);
  for (const GoldenImage& image : images) {
    EXPECT_EQ(image.pixels.size(), static_cast<size_t>(3 * image.height * image.width));
  }
  const std::vector<int32_t> prompt = golden->Ids("input_ids");
  ASSERT_FALSE(prompt.empty());
  EXPECT_EQ(prompt.front(), 1);                                      // <s>
  EXPECT_EQ(golden->Floats("logits").size(), prompt.size() * 2048);  // [S, vocab]
}

TEST(PixtralTinyGoldenTest, AnAbsentTensorFailsTheTest) {
  absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
  ASSERT_TRUE(golden.ok()) << golden.status();
  EXPECT_NONFATAL_FAILURE(EXPECT_TRUE(golden->Floats("no_such_tensor").empty()), "no_such_tensor");
  EXPECT_NONFATAL_FAILURE(EXPECT_TRUE(golden->Ids("no_such_tensor").empty()), "no_such_tensor");
}

}  // namespace
}  // namespace pixtral
