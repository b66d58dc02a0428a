#include "decoder/pixtral_sequence_model.h"

#include <cmath>
#include <memory>
#include <vector>

#include "common/testing/pixtral_tiny.h"
#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {
namespace {

// The model may generate the image tokens themselves ([IMG], [IMG_BREAK], [IMG_END]); they are
// then ordinary tokens that decoding goes on from, never placeholders waiting for features.
TEST(PixtralSequenceModelTest, DecodingGoesOnAfterGeneratedImageTokens) {
  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  auto model = PixtralModel::Load(kPixtralTinyDir, backend.get(), {.block_size = 4});
  ASSERT_TRUE(model.ok()) << model.status();
  PixtralSequenceModel sequences(**model);
  const Prompt prompt{.tokens = {1, 3, 500, 600, 4}};
  const Prompt* prompts[] = {&prompt, &prompt};
  auto prefill = sequences.Prefill(prompts, std::vector<int>{16, 16});
  ASSERT_TRUE(prefill.ok()) << prefill.status();
  const VisionEncoderConfig& vision = *(*model)->config().vision;
  for (const int32_t token :
       {vision.image_token_id, vision.image_break_token_id, vision.image_end_token_id}) {
    // One sequence emits the image token, the other an ordinary one, in the same step.
    const std::vector<int32_t> tokens = {token, 700};
    auto logits = sequences.Decode(prefill->ids, tokens);
    ASSERT_TRUE(logits.ok()) << "token " << token << ": " << logits.status();
    ASSERT_EQ(logits->size(), 2u * sequences.vocab_size());
    for (float v : *logits) ASSERT_TRUE(std::isfinite(v));
  }
  for (SequenceModel::SequenceId id : prefill->ids) sequences.Release(id);
}

}  // namespace
}  // namespace pixtral
