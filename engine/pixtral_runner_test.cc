// The engine on the pixtral-tiny model (CPU): rows with images, generated image tokens, and the
// prefix cache across turns of a chat with images, checked against the same requests computed
// from scratch.
#include "engine/pixtral_runner.h"

#include <cmath>
#include <memory>
#include <vector>

#include "common/testing/pixtral_tiny.h"
#include "decoder/generate.h"
#include "engine/scheduler.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {
namespace {

class PixtralRunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto golden = PixtralTinyGolden::Open();
    ASSERT_TRUE(golden.ok()) << golden.status();
    multimodal_.prompt.tokens = golden->Ids("input_ids");
    for (const GoldenImage& image : golden->Images()) {
      multimodal_.prompt.images.push_back({image.height, image.width, image.pixels});
    }
    multimodal_.max_tokens = 6;
    multimodal_.ignore_eos = true;
  }

  static std::unique_ptr<PixtralModel> Load(kernels::Backend* backend) {
    auto model = PixtralModel::Load(kPixtralTinyDir, backend, {.block_size = 4, .num_blocks = 512});
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? *std::move(model) : nullptr;
  }

  // Greedy tokens of `request` on a fresh model, with no cache to share.
  std::vector<int32_t> FromScratch(const GenerationRequest& request) {
    std::unique_ptr<PixtralModel> model = Load(backend_.get());
    PixtralRunner runner(*model);
    auto out = Generate(runner, {request}, {});
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? (*out)[0].tokens : std::vector<int32_t>{};
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  GenerationRequest multimodal_;
};

// The model may generate the image tokens themselves ([IMG], [IMG_BREAK], [IMG_END]); they are
// then ordinary tokens that decoding goes on from, never placeholders waiting for features.
TEST_F(PixtralRunnerTest, DecodingGoesOnAfterGeneratedImageTokens) {
  std::unique_ptr<PixtralModel> model = Load(backend_.get());
  PixtralRunner runner(*model);
  const std::vector<int32_t> prompt = {1, 3, 500, 600, 4};
  const SequenceId a = runner.AddSequence(), b = runner.AddSequence();
  ASSERT_TRUE(runner
                  .Step({{.sequence = a, .tokens = prompt, .prompt_tokens = 5},
                         {.sequence = b, .tokens = prompt, .prompt_tokens = 5}})
                  .ok());
  const VisionEncoderConfig& vision = *model->config().vision;
  auto sampler = Sampler::Create({});
  for (const int32_t token :
       {vision.image_token_id, vision.image_break_token_id, vision.image_end_token_id}) {
    // One sequence emits the image token, the other an ordinary one, in the same step.
    const int32_t other = 700;
    auto out = runner.Step({{.sequence = a, .tokens = {&token, 1}, .sampler = &*sampler},
                            {.sequence = b, .tokens = {&other, 1}, .sampler = &*sampler}});
    ASSERT_TRUE(out.ok()) << "token " << token << ": " << out.status();
    ASSERT_EQ(out->size(), 2u);
    EXPECT_TRUE((*out)[0].sampled && (*out)[1].sampled);
  }
  runner.Release(a);
  runner.Release(b);
  EXPECT_EQ(runner.num_used_blocks(), 0);
}

TEST_F(PixtralRunnerTest, PromptKeysCheckTheImages) {
  std::unique_ptr<PixtralModel> model = Load(backend_.get());
  PixtralRunner runner(*model);
  auto keys = runner.PromptKeys(multimodal_.prompt);
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->size(), multimodal_.prompt.tokens.size());
  Prompt missing = multimodal_.prompt;
  missing.images.pop_back();
  EXPECT_EQ(runner.PromptKeys(missing).status().code(), absl::StatusCode::kInvalidArgument);
  Prompt both = multimodal_.prompt;
  both.image_features = {1.0f};
  EXPECT_EQ(runner.PromptKeys(both).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(runner.PromptKeys({.tokens = {1, 1 << 20}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Small steps: the image prompt prefills in chunks that carry their own image rows, beside a
// text stream; both get the tokens they get alone.
TEST_F(PixtralRunnerTest, ChunkedImagePromptBesideATextStream) {
  std::unique_ptr<PixtralModel> model = Load(backend_.get());
  PixtralRunner runner(*model);
  GenerationRequest text;
  text.prompt.tokens = {1, 3, 1200, 1300, 1400, 4};
  text.max_tokens = 8;
  text.ignore_eos = true;
  auto out = Generate(runner, {text, multimodal_}, {.step_token_budget = 7});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens, FromScratch(text));
  EXPECT_EQ((*out)[1].tokens, FromScratch(multimodal_));
  EXPECT_EQ(runner.num_used_blocks(), 0);
}

// The second turn of a chat about images recomputes only what is new, and the vision encoder
// does not run again when every [IMG] row is in the cache.
TEST_F(PixtralRunnerTest, SecondTurnReusesTheFirstTurnsBlocksAndSkipsTheEncoder) {
  std::unique_ptr<PixtralModel> model = Load(backend_.get());
  PixtralRunner runner(*model);
  Scheduler scheduler(runner, {});
  auto run = [&](const GenerationRequest& request) {
    std::optional<absl::StatusOr<Completion>> done;
    EXPECT_TRUE(
        scheduler.Submit(request, {.on_done = [&](absl::StatusOr<Completion> c) { done = c; }})
            .ok());
    while (scheduler.HasWork()) scheduler.Step();
    EXPECT_TRUE(done.has_value() && done->ok());
    return done.has_value() && done->ok() ? (**done).tokens : std::vector<int32_t>{};
  };
  const std::vector<int32_t> first = run(multimodal_);
  EXPECT_EQ(runner.images_encoded(), 2);

  GenerationRequest second = multimodal_;
  second.prompt.tokens.insert(second.prompt.tokens.end(), first.begin(), first.end());
  second.prompt.tokens.insert(second.prompt.tokens.end(), {3, 1500, 1600, 4});
  const EngineStats before = scheduler.stats();
  const std::vector<int32_t> answer = run(second);
  const EngineStats after = scheduler.stats();
  // Everything up to the first turn's last fed-back token, in whole blocks of 4.
  const int64_t computed = std::ssize(multimodal_.prompt.tokens) + std::ssize(first) - 1;
  EXPECT_EQ(after.cached_prompt_tokens - before.cached_prompt_tokens, computed / 4 * 4);
  EXPECT_EQ(runner.images_encoded(), 2);  // not again
  EXPECT_EQ(runner.images_skipped(), 2);
  EXPECT_EQ(answer, FromScratch(second));
  EXPECT_EQ(runner.num_used_blocks(), 0);
}

// Received encoder features (the distributed mode) key the cache by their content.
TEST_F(PixtralRunnerTest, ReceivedFeaturesAreCachedByContent) {
  std::unique_ptr<PixtralModel> model = Load(backend_.get());
  PixtralRunner runner(*model);
  VisionEncoder* vision = model->vision_encoder();
  auto encoded = vision->Encode(ImageViews(multimodal_.prompt));
  ASSERT_TRUE(encoded.ok());
  GenerationRequest request = multimodal_;
  request.prompt.images.clear();
  request.prompt.image_features = kernels::ToHost(*backend_, *encoded);
  Scheduler scheduler(runner, {});
  for (int i = 0; i < 2; ++i) {
    std::optional<absl::StatusOr<Completion>> done;
    ASSERT_TRUE(
        scheduler.Submit(request, {.on_done = [&](absl::StatusOr<Completion> c) { done = c; }})
            .ok());
    while (scheduler.HasWork()) scheduler.Step();
    ASSERT_TRUE(done.has_value() && done->ok());
    EXPECT_EQ((**done).tokens, FromScratch(multimodal_)) << "run " << i;
  }
  EXPECT_EQ(scheduler.stats().cached_prompt_tokens,
            (std::ssize(request.prompt.tokens) - 1) / 4 * 4);
}

// Keyed received features: the cache is keyed by the sender's keys, so a later prompt with the
// first image left out (it is cached) still gets the tokens computed from scratch; the keys are
// checked against the prompt's images.
TEST_F(PixtralRunnerTest, KeyedFeaturesLetALaterPromptLeaveCachedImagesOut) {
  std::unique_ptr<PixtralModel> model = Load(backend_.get());
  PixtralRunner runner(*model);
  VisionEncoder* vision = model->vision_encoder();
  const std::vector<Image> views = ImageViews(multimodal_.prompt);
  ASSERT_EQ(views.size(), 2u);
  auto encoded = vision->Encode(views);
  ASSERT_TRUE(encoded.ok());
  GenerationRequest request = multimodal_;
  request.prompt.images.clear();
  request.prompt.image_features = kernels::ToHost(*backend_, *encoded);
  for (int i = 0; i < 2; ++i) {
    request.prompt.image_keys.push_back(
        {.key = {.hi = 100u + i, .lo = 7}, .rows = vision->NumPatches(views[i])});
  }

  Prompt one_key = request.prompt;  // both images' rows under one key
  one_key.image_keys = {
      {.key = {1, 2},
       .rows = std::ssize(request.prompt.image_features) / model->config().vision->hidden_size}};
  EXPECT_EQ(runner.PromptKeys(one_key).status().code(), absl::StatusCode::kInvalidArgument);
  Prompt shifted = request.prompt;  // the right total, the wrong split
  shifted.image_keys[0].rows += 1;
  shifted.image_keys[1].rows -= 1;
  EXPECT_EQ(runner.PromptKeys(shifted).status().code(), absl::StatusCode::kInvalidArgument);
  Prompt too_many = request.prompt;  // features of an image that was left out
  too_many.first_feature_image = 1;
  EXPECT_EQ(runner.PromptKeys(too_many).status().code(), absl::StatusCode::kInvalidArgument);

  Scheduler scheduler(runner, {});
  auto run = [&](const GenerationRequest& r) {
    std::optional<absl::StatusOr<Completion>> done;
    EXPECT_TRUE(
        scheduler.Submit(r, {.on_done = [&](absl::StatusOr<Completion> c) { done = c; }}).ok());
    while (scheduler.HasWork()) scheduler.Step();
    EXPECT_TRUE(done.has_value() && done->ok()) << (done ? done->status() : absl::OkStatus());
    return done.has_value() && done->ok() ? (**done).tokens : std::vector<int32_t>{};
  };
  EXPECT_EQ(run(request), FromScratch(multimodal_));
  GenerationRequest later = request;
  later.prompt.first_feature_image = 1;
  const int64_t first_rows = request.prompt.image_keys[0].rows;
  const int64_t width = model->config().vision->hidden_size;
  later.prompt.image_features.erase(later.prompt.image_features.begin(),
                                    later.prompt.image_features.begin() + first_rows * width);
  EXPECT_EQ(run(later), FromScratch(multimodal_));
  EXPECT_EQ(runner.num_used_blocks(), 0);
}

}  // namespace
}  // namespace pixtral
