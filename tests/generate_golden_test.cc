// Generate() on the CPU backend against the pixtral-tiny goldens (Hugging Face transformers,
// float32): greedy continuations token for token, alone and batched, plus seeded sampling,
// cache accounting and bad requests through the whole stack.

#include <memory>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "decoder/generate.h"
#include "decoder/pixtral_model.h"
#include "decoder/pixtral_sequence_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

constexpr char kModelDir[] = "tests/data/pixtral-tiny";
constexpr int kNumBlocks = 32;  // 16 positions each
constexpr int32_t kEos = 2;

class GenerateGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<PixtralModel>> model =
        PixtralModel::Load(kModelDir, backend_.get(), {.block_size = 16, .num_blocks = kNumBlocks});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
    sequences_ = std::make_unique<PixtralSequenceModel>(*model_);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> golden =
        SafetensorsFile::Open(std::string(kModelDir) + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = *std::move(golden);

    multimodal_.prompt.tokens = Ids("input_ids");
    for (const char* name : {"pixel_values_0", "pixel_values_1"}) {
      const TensorView* view = golden_->Find(name);
      ASSERT_NE(view, nullptr);
      multimodal_.prompt.images.push_back({view->shape[1], view->shape[2], *ToFloat32(*view)});
    }
    text_.prompt.tokens = Ids("text_input_ids");
    for (GenerationRequest* r : {&multimodal_, &text_}) {
      r->max_tokens = 12;
      r->ignore_eos = true;
    }
  }

  std::vector<int32_t> Ids(const char* name) {
    std::vector<int64_t> wide = *ToInt64(*golden_->Find(name));
    return std::vector<int32_t>(wide.begin(), wide.end());
  }

  absl::StatusOr<std::vector<Completion>> Run(const std::vector<GenerationRequest>& requests) {
    return Generate(*sequences_, requests, {.eos_id = kEos});
  }

  int FreeBlocks() const { return model_->decoder().cache().num_free_blocks(); }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> model_;
  std::unique_ptr<PixtralSequenceModel> sequences_;
  std::unique_ptr<SafetensorsFile> golden_;
  GenerationRequest multimodal_, text_;
};

TEST_F(GenerateGoldenTest, GreedyMultimodalMatchesGolden) {
  absl::StatusOr<std::vector<Completion>> out = Run({multimodal_});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, Ids("greedy_multimodal"));
  EXPECT_EQ(FreeBlocks(), kNumBlocks);
}

TEST_F(GenerateGoldenTest, GreedyTextMatchesGolden) {
  absl::StatusOr<std::vector<Completion>> out = Run({text_});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, Ids("greedy_text"));
}

TEST_F(GenerateGoldenTest, BatchedGreedyMatchesGoldens) {
  absl::StatusOr<std::vector<Completion>> out = Run({text_, multimodal_, text_});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, Ids("greedy_text"));
  EXPECT_EQ((*out)[1].tokens, Ids("greedy_multimodal"));
  EXPECT_EQ((*out)[2].tokens, Ids("greedy_text"));
  EXPECT_EQ(FreeBlocks(), kNumBlocks);
}

TEST_F(GenerateGoldenTest, ChunkedPrefillGivesTheSameCompletion) {
  PixtralSequenceModel chunked(*model_, /*prefill_chunk_tokens=*/5);
  absl::StatusOr<std::vector<Completion>> out =
      Generate(chunked, {multimodal_, text_}, {.eos_id = kEos});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, Ids("greedy_multimodal"));
  EXPECT_EQ((*out)[1].tokens, Ids("greedy_text"));
}

TEST_F(GenerateGoldenTest, SeededSamplingIsReproducibleAndBatchIndependent) {
  GenerationRequest a = multimodal_, b = text_;
  a.sampling = {.temperature = 1.0f, .top_p = 0.9f, .seed = 7};
  b.sampling = {.temperature = 0.7f, .top_p = 1.0f, .seed = 8};
  a.logprobs = b.logprobs = true;
  absl::StatusOr<std::vector<Completion>> together = Run({a, b});
  absl::StatusOr<std::vector<Completion>> a_alone = Run({a});
  absl::StatusOr<std::vector<Completion>> b_alone = Run({b});
  ASSERT_TRUE(together.ok() && a_alone.ok() && b_alone.ok());
  EXPECT_EQ((*together)[0].tokens, (*a_alone)[0].tokens);
  EXPECT_EQ((*together)[1].tokens, (*b_alone)[0].tokens);
  ASSERT_EQ((*together)[0].logprobs.size(), 12u);
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_NEAR((*together)[0].logprobs[i], (*a_alone)[0].logprobs[i], 1e-4);
    EXPECT_LE((*together)[0].logprobs[i], 0.0f);
  }
  // Sampling at temperature 1 from a random-ish model does not retrace the greedy path.
  EXPECT_NE((*together)[0].tokens, Ids("greedy_multimodal"));
}

TEST_F(GenerateGoldenTest, EosStopsUnlessIgnored) {
  // Make the 4th greedy token the "EOS": the completion stops before it.
  const std::vector<int32_t> greedy = Ids("greedy_text");
  GenerationRequest r = text_;
  r.ignore_eos = false;
  absl::StatusOr<std::vector<Completion>> out = Generate(*sequences_, {r}, {.eos_id = greedy[3]});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, std::vector<int32_t>(greedy.begin(), greedy.begin() + 3));
  EXPECT_EQ((*out)[0].finish_reason, FinishReason::kEos);
  EXPECT_EQ(FreeBlocks(), kNumBlocks);
}

TEST_F(GenerateGoldenTest, BadRequestsFailAndLeaveTheModelUsable) {
  GenerationRequest out_of_range = text_;
  out_of_range.prompt.tokens[3] = 2048;  // vocab_size
  GenerationRequest missing_image = multimodal_;
  missing_image.prompt.images.pop_back();
  GenerationRequest too_big = multimodal_;
  too_big.prompt.images[0] = {1040, 16, std::vector<float>(3 * 1040 * 16)};  // > image_size
  GenerationRequest too_long = text_;
  too_long.max_tokens = kNumBlocks * 16;  // prompt + completion exceed the cache

  for (const GenerationRequest& bad : {out_of_range, missing_image, too_big}) {
    absl::StatusOr<std::vector<Completion>> out = Run({text_, bad});
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
    EXPECT_EQ(FreeBlocks(), kNumBlocks);
  }
  absl::StatusOr<std::vector<Completion>> out = Run({too_long});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << out.status();
  EXPECT_EQ(FreeBlocks(), kNumBlocks);

  out = Run({multimodal_});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, Ids("greedy_multimodal"));
}

TEST_F(GenerateGoldenTest, CancelledRequestReturnsItsBlocks) {
  GenerateOptions options{.eos_id = kEos};
  options.on_token = [&](int request, const SampledToken&) { return request != 0; };
  absl::StatusOr<std::vector<Completion>> out =
      Generate(*sequences_, {multimodal_, text_}, options);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].finish_reason, FinishReason::kCancelled);
  EXPECT_EQ((*out)[1].tokens, Ids("greedy_text"));
  EXPECT_EQ(FreeBlocks(), kNumBlocks);
}

}  // namespace
}  // namespace pixtral
