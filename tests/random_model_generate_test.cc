// A folder from make_random_model's library runs through the engine: it loads, its activations
// stay finite through a deeper stack, and Generate() completes on it with the real vocabulary.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "decoder/generate.h"
#include "decoder/pixtral_model.h"
#include "decoder/pixtral_sequence_model.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"
#include "tools/random_model.h"

namespace pixtral {
namespace {

TEST(RandomModelGenerateTest, ToyModelRunsWithFiniteLogits) {
  ModelConfig config = ToyConfig();
  config.decoder.n_layers = 6;
  config.vision->num_hidden_layers = 4;
  const std::string dir = testing::TempDir() + "/toy";
  ASSERT_TRUE(WriteRandomModel(dir, config, /*seed=*/3, "").ok());

  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  absl::StatusOr<std::unique_ptr<PixtralModel>> model = PixtralModel::Load(dir, backend.get());
  ASSERT_TRUE(model.ok()) << model.status();

  // <s> [INST] text, a 2x3-patch image, text [/INST]
  const int32_t img = 10, brk = 12, end = 13;
  GenerationRequest request;
  request.prompt.tokens = {1, 3, 5000, 70000, img, img, img, brk, img, img, img, end, 131071, 4};
  request.prompt.images.push_back({32, 48, std::vector<float>(3 * 32 * 48)});
  for (size_t i = 0; i < request.prompt.images[0].pixels.size(); ++i) {
    request.prompt.images[0].pixels[i] = std::sin(0.01f * i);
  }
  request.max_tokens = 5;
  request.ignore_eos = true;
  request.logprobs = true;

  const std::vector<Image> images = ImageViews(request.prompt);
  const SequenceId seq = (*model)->decoder().AddSequence();
  absl::StatusOr<std::vector<float>> logits =
      (*model)->Prefill(seq, request.prompt.tokens, images, {.all_logits = true});
  (*model)->decoder().Release(seq);
  ASSERT_TRUE(logits.ok()) << logits.status();
  double sum_sq = 0;
  for (float x : *logits) {
    ASSERT_TRUE(std::isfinite(x));
    sum_sq += double{x} * x;
  }
  const double rms = std::sqrt(sum_sq / logits->size());
  EXPECT_GT(rms, 0.1);
  EXPECT_LT(rms, 10.0);

  PixtralSequenceModel sequences(**model);
  absl::StatusOr<std::vector<Completion>> out = Generate(sequences, {request}, {.eos_id = 2});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)[0].tokens.size(), 5u);
  for (float lp : (*out)[0].logprobs) EXPECT_TRUE(std::isfinite(lp));
}

}  // namespace
}  // namespace pixtral
