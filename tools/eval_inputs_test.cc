#include "tools/eval_inputs.h"

#include <string>
#include <vector>

#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Write(const std::string& name, const std::vector<TensorToWrite>& tensors) {
  const std::string path = testing::TempDir() + "/" + name + ".safetensors";
  absl::Status s = WriteSafetensors(path, tensors);
  EXPECT_TRUE(s.ok()) << s;
  return path;
}

const std::vector<int64_t> kIds = {1, 10, 10, 13, 4};
const std::vector<float> kPixels(3 * 16 * 32, 0.5f);
const std::vector<float> kPixels2(3 * 16 * 16, -0.25f);

TEST(EvalInputsTest, ReadsIdsAndImagesInOrder) {
  const std::string path =
      Write("ok", {{{"pixel_values_1", DType::kF32, {3, 16, 16}}, AsBytes(kPixels2)},
                   {{"input_ids", DType::kI64, {5}}, AsBytes(kIds)},
                   {{"pixel_values_0", DType::kF32, {3, 16, 32}}, AsBytes(kPixels)}});
  absl::StatusOr<Prompt> prompt = LoadEvalInputs(path);
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_THAT(prompt->tokens, ElementsAre(1, 10, 10, 13, 4));
  ASSERT_EQ(prompt->images.size(), 2u);
  EXPECT_EQ(prompt->images[0].height, 16);
  EXPECT_EQ(prompt->images[0].width, 32);
  EXPECT_EQ(prompt->images[0].pixels, kPixels);
  EXPECT_EQ(prompt->images[1].pixels, kPixels2);
}

TEST(EvalInputsTest, TextOnly) {
  absl::StatusOr<Prompt> prompt =
      LoadEvalInputs(Write("text", {{{"input_ids", DType::kI64, {5}}, AsBytes(kIds)}}));
  ASSERT_TRUE(prompt.ok()) << prompt.status();
  EXPECT_TRUE(prompt->images.empty());
}

void ExpectInvalid(const std::string& name, const std::vector<TensorToWrite>& tensors,
                   const std::string& message) {
  absl::StatusOr<Prompt> prompt = LoadEvalInputs(Write(name, tensors));
  EXPECT_EQ(prompt.status().code(), absl::StatusCode::kInvalidArgument) << prompt.status();
  EXPECT_THAT(prompt.status().message(), HasSubstr(message));
}

TEST(EvalInputsTest, RejectsBadInputs) {
  const std::vector<int32_t> ids32 = {1, 2};
  const std::vector<int64_t> negative = {1, -5};
  const std::vector<int64_t> huge = {int64_t{1} << 40};
  ExpectInvalid("missing", {{{"pixel_values_0", DType::kF32, {3, 16, 32}}, AsBytes(kPixels)}},
                "no input_ids");
  ExpectInvalid("i32", {{{"input_ids", DType::kI32, {2}}, AsBytes(ids32)}}, "int64");
  ExpectInvalid("negative", {{{"input_ids", DType::kI64, {2}}, AsBytes(negative)}}, "-5");
  ExpectInvalid("huge", {{{"input_ids", DType::kI64, {1}}, AsBytes(huge)}}, "not a token id");
  ExpectInvalid("gap",
                {{{"input_ids", DType::kI64, {5}}, AsBytes(kIds)},
                 {{"pixel_values_1", DType::kF32, {3, 16, 32}}, AsBytes(kPixels)}},
                "numbered");
  ExpectInvalid("rank",
                {{{"input_ids", DType::kI64, {5}}, AsBytes(kIds)},
                 {{"pixel_values_0", DType::kF32, {3 * 16, 32}}, AsBytes(kPixels)}},
                "[3, H, W]");
  ExpectInvalid("extra",
                {{{"input_ids", DType::kI64, {5}}, AsBytes(kIds)},
                 {{"logits", DType::kF32, {3, 16, 32}}, AsBytes(kPixels)}},
                "unexpected tensor \"logits\"");
}

TEST(EvalInputsTest, MissingFileIsAnError) {
  EXPECT_FALSE(LoadEvalInputs(testing::TempDir() + "/absent.safetensors").ok());
}

}  // namespace
}  // namespace pixtral
