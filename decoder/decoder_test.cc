#include "decoder/decoder.h"

#include <memory>
#include <vector>

#include "common/testing/compare.h"
#include "common/testing/pixtral_tiny.h"
#include "decoder/pixtral_model.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {
namespace {

constexpr int kNumBlocks = 32;

class DecoderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = PixtralModel::Load(kPixtralTinyDir, backend_.get(),
                                    {.block_size = 4, .num_blocks = kNumBlocks});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *std::move(model);
  }

  Decoder& decoder() { return model_->decoder(); }

  // Logits of the last token of `tokens` after feeding them in chunks of the given sizes.
  std::vector<float> FeedInChunks(const std::vector<int32_t>& tokens, std::vector<int> chunks) {
    SequenceId seq = decoder().AddSequence();
    std::vector<float> last;
    size_t begin = 0;
    for (int n : chunks) {
      auto out = decoder().Forward(
          {{.sequence = seq, .tokens = absl::MakeConstSpan(tokens).subspan(begin, n)}});
      EXPECT_TRUE(out.ok()) << out.status();
      if (out.ok()) last = (*out)[0];
      begin += n;
    }
    EXPECT_EQ(begin, tokens.size());
    EXPECT_EQ(decoder().Length(seq), static_cast<int64_t>(tokens.size()));
    decoder().Release(seq);
    return last;
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> model_;
  const std::vector<int32_t> prompt_ = {1, 3, 500, 600, 700, 800, 900, 1000, 1100, 1200, 4};
};

TEST_F(DecoderTest, ChunkedPrefillEqualsOnePrefill) {
  const std::vector<float> whole = FeedInChunks(prompt_, {11});
  ASSERT_EQ(whole.size(), 2048u);
  EXPECT_LE(RelativeError(FeedInChunks(prompt_, {3, 5, 3}), whole), 1e-6);
  EXPECT_LE(RelativeError(FeedInChunks(prompt_, {4, 4, 1, 1, 1}), whole), 1e-6);
}

// A sequence started on another's published blocks computes what it would from scratch, and the
// shared blocks stay with the other holder until both are released.
TEST_F(DecoderTest, ASequenceOnCachedPrefixBlocksEqualsOneFromScratch) {
  const std::vector<float> whole = FeedInChunks(prompt_, {11});
  const std::vector<BlockKey> keys = {{1, 1}, {2, 2}};  // what blocks 0 and 1 hold
  SequenceId first = decoder().AddSequence();
  ASSERT_TRUE(decoder().Forward({{.sequence = first, .tokens = prompt_}}).ok());
  decoder().PublishBlocks(first, keys);
  SequenceId second = decoder().AddSequence();
  ASSERT_EQ(decoder().AttachCachedPrefix(second, keys), 2);
  EXPECT_EQ(decoder().Length(second), 8);
  EXPECT_EQ(decoder().cache().num_used_blocks(), 3);  // 2 shared + the first's third block
  auto out =
      decoder().Forward({{.sequence = second, .tokens = absl::MakeConstSpan(prompt_).subspan(8)}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LE(RelativeError((*out)[0], whole), 1e-6);
  EXPECT_EQ(decoder().AttachCachedPrefix(second, keys), 0);  // only on an empty sequence
  decoder().Release(first);
  EXPECT_EQ(decoder().cache().num_used_blocks(), 3);  // the second's 2 shared + its own
  decoder().Release(second);
  EXPECT_EQ(decoder().cache().num_used_blocks(), 0);
  EXPECT_EQ(decoder().cache().num_free_blocks(), kNumBlocks);
}

// Only completely filled blocks are published: a partial block's content is still to come.
TEST_F(DecoderTest, OnlyFullBlocksArePublished) {
  SequenceId seq = decoder().AddSequence();
  ASSERT_TRUE(
      decoder().Forward({{.sequence = seq, .tokens = absl::MakeConstSpan(prompt_).first(6)}}).ok());
  decoder().PublishBlocks(seq, {{1, 1}, {2, 2}});
  EXPECT_EQ(decoder().cache().num_cached_blocks(), 1);
  decoder().Release(seq);
}

TEST_F(DecoderTest, GeneratedImageTokensAreOrdinaryTokens) {
  const int32_t img = model_->config().vision->image_token_id;
  // The prompt, then [IMG] twice as if the model had generated it: one step with a two-token
  // generated tail, against the prompt and then two decode steps.
  std::vector<int32_t> tokens = prompt_;
  tokens.push_back(img);
  tokens.push_back(img);
  SequenceId whole = decoder().AddSequence();
  auto one = decoder().Forward({{.sequence = whole,
                                 .tokens = tokens,
                                 .prompt_tokens = static_cast<int64_t>(prompt_.size())}});
  ASSERT_TRUE(one.ok()) << one.status();

  SequenceId stepped = decoder().AddSequence();
  ASSERT_TRUE(decoder().Forward({{.sequence = stepped, .tokens = prompt_}}).ok());
  std::vector<float> last;
  for (int i = 0; i < 2; ++i) {
    auto out = decoder().Forward({{.sequence = stepped, .tokens = {&img, 1}, .prompt_tokens = 0}});
    ASSERT_TRUE(out.ok()) << out.status();
    last = (*out)[0];
  }
  EXPECT_LE(RelativeError(last, (*one)[0]), 1e-5);
  // In the prompt part, the same [IMG] needs a feature row.
  auto prompt_img = decoder().Forward({{.sequence = stepped, .tokens = {&img, 1}}});
  EXPECT_EQ(prompt_img.status().code(), absl::StatusCode::kInvalidArgument);
  decoder().Release(whole);
  decoder().Release(stepped);
}

// Sampling on the backend picks what the host Sampler picks from the same step's logits, with
// the same seeded streams: greedy, and temperature with a nucleus.
TEST_F(DecoderTest, ForwardSampledPicksWhatTheSamplerPicksFromTheLogits) {
  for (const SamplingParams params : {SamplingParams{}, SamplingParams{0.8f, 0.9f, 5}}) {
    SequenceId a = decoder().AddSequence(), b = decoder().AddSequence();
    SequenceId a2 = decoder().AddSequence(), b2 = decoder().AddSequence();
    const std::vector<int32_t> other = {1, 3, 42, 4};
    const std::vector<StepInput> step = {{.sequence = a, .tokens = prompt_},
                                         {.sequence = b, .tokens = other}};
    const std::vector<StepInput> twin = {{.sequence = a2, .tokens = prompt_},
                                         {.sequence = b2, .tokens = other}};
    Sampler host_a = *Sampler::Create(params), host_b = *Sampler::Create(params);
    Sampler dev_a = *Sampler::Create(params), dev_b = *Sampler::Create(params);
    for (int i = 0; i < 3; ++i) {
      auto logits = decoder().Forward(step);
      ASSERT_TRUE(logits.ok()) << logits.status();
      auto sampled = decoder().ForwardSampled(twin, {dev_a.NextDraw(), dev_b.NextDraw()});
      ASSERT_TRUE(sampled.ok()) << sampled.status();
      ASSERT_EQ(sampled->size(), 2u);
      const SampledToken want_a = *host_a.Sample((*logits)[0]);
      const SampledToken want_b = *host_b.Sample((*logits)[1]);
      ASSERT_TRUE((*sampled)[0].ok() && (*sampled)[1].ok());
      EXPECT_EQ((*sampled)[0]->id, want_a.id);
      EXPECT_EQ((*sampled)[1]->id, want_b.id);
      EXPECT_NEAR((*sampled)[0]->logprob, want_a.logprob, 1e-5);
    }
    for (SequenceId id : {a, b, a2, b2}) decoder().Release(id);
  }
}

TEST_F(DecoderTest, ForwardSampledRefusesBadDrawsAndAllLogits) {
  SequenceId seq = decoder().AddSequence();
  EXPECT_EQ(decoder().ForwardSampled({{.sequence = seq, .tokens = prompt_}}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoder()
                .ForwardSampled({{.sequence = seq, .tokens = prompt_}}, {{.top_p = 0.0f}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoder()
                .ForwardSampled({{.sequence = seq, .tokens = prompt_, .all_logits = true}}, {{}})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoder().Length(seq), 0);
  decoder().Release(seq);
}

TEST(DecoderCacheTest, SizingFromFreeMemoryNeedsADeviceBackend) {
  std::unique_ptr<kernels::Backend> cpu = kernels::NewCpuBackend();
  auto model = PixtralModel::Load(kPixtralTinyDir, cpu.get(), {.block_size = 4, .num_blocks = 0});
  EXPECT_EQ(model.status().code(), absl::StatusCode::kUnimplemented) << model.status();
}

TEST_F(DecoderTest, AllLogitsEndWithTheLastPositionsLogits) {
  SequenceId seq = decoder().AddSequence();
  auto out = decoder().Forward({{.sequence = seq, .tokens = prompt_, .all_logits = true}});
  ASSERT_TRUE(out.ok()) << out.status();
  ASSERT_EQ((*out)[0].size(), prompt_.size() * 2048);
  const std::vector<float> last((*out)[0].end() - 2048, (*out)[0].end());
  EXPECT_LE(RelativeError(last, FeedInChunks(prompt_, {11})), 1e-6);
}

TEST_F(DecoderTest, BatchedStepsEqualEachSequenceAlone) {
  const std::vector<int32_t> a = {1, 100, 200, 300, 400, 500, 7}, b = {1, 42, 43}, c = {1, 9};
  // Alone: prefill, then two decode tokens each.
  std::vector<std::vector<float>> alone;
  for (const auto* p : {&a, &b, &c}) {
    std::vector<int32_t> tokens = *p;
    tokens.push_back(77);
    tokens.push_back(88);
    alone.push_back(FeedInChunks(tokens, {static_cast<int>(p->size()), 1, 1}));
  }
  // Together: one batched prefill of three lengths, then batched decode steps.
  SequenceId ids[3] = {decoder().AddSequence(), decoder().AddSequence(), decoder().AddSequence()};
  ASSERT_TRUE(decoder()
                  .Forward({{.sequence = ids[0], .tokens = a},
                            {.sequence = ids[1], .tokens = b},
                            {.sequence = ids[2], .tokens = c}})
                  .ok());
  const int32_t t1 = 77, t2 = 88;
  std::vector<std::vector<float>> together;
  for (const int32_t* t : {&t1, &t2}) {
    auto out = decoder().Forward({{.sequence = ids[0], .tokens = {t, 1}},
                                  {.sequence = ids[1], .tokens = {t, 1}},
                                  {.sequence = ids[2], .tokens = {t, 1}}});
    ASSERT_TRUE(out.ok()) << out.status();
    together = *out;
  }
  for (int i = 0; i < 3; ++i) EXPECT_LE(RelativeError(together[i], alone[i]), 1e-6) << i;
}

// The schedule with the norms and residual adds inside the products (the GPU's at one row) gives
// the logits of the one with AddRmsNorm between them, for a prompt and batched decode steps.
TEST_F(DecoderTest, NormsInsideTheProductsGiveTheSameLogits) {
  std::unique_ptr<kernels::Backend> fused_backend =
      kernels::NewCpuBackend({.norms_inside_products = true});
  auto fused_model = PixtralModel::Load(kPixtralTinyDir, fused_backend.get(),
                                        {.block_size = 4, .num_blocks = kNumBlocks});
  ASSERT_TRUE(fused_model.ok()) << fused_model.status();
  Decoder* decoders[2] = {&decoder(), &(*fused_model)->decoder()};
  std::vector<std::vector<float>> logits[2];
  const std::vector<int32_t> other = {1, 42, 43};
  for (int d = 0; d < 2; ++d) {
    const SequenceId a = decoders[d]->AddSequence(), b = decoders[d]->AddSequence();
    auto prompt = decoders[d]->Forward({{.sequence = a, .tokens = prompt_}});
    ASSERT_TRUE(prompt.ok()) << prompt.status();
    logits[d].push_back((*prompt)[0]);
    ASSERT_TRUE(decoders[d]->Forward({{.sequence = b, .tokens = other}}).ok());
    const int32_t t = 77;
    auto step = decoders[d]->Forward({{.sequence = a, .tokens = {&t, 1}}});  // one row
    ASSERT_TRUE(step.ok()) << step.status();
    logits[d].push_back((*step)[0]);
    auto both = decoders[d]->Forward({{.sequence = a, .tokens = {&t, 1}},  // two rows
                                      {.sequence = b, .tokens = {&t, 1}}});
    ASSERT_TRUE(both.ok()) << both.status();
    logits[d].insert(logits[d].end(), both->begin(), both->end());
  }
  ASSERT_EQ(logits[0].size(), logits[1].size());
  for (size_t i = 0; i < logits[0].size(); ++i) {
    EXPECT_LE(RelativeError(logits[1][i], logits[0][i]), 1e-6) << i;
  }
}

TEST_F(DecoderTest, ReleasingASequenceReturnsAllItsBlocks) {
  SequenceId keep = decoder().AddSequence();
  ASSERT_TRUE(decoder().Forward({{.sequence = keep, .tokens = prompt_}}).ok());
  const int free_before = decoder().cache().num_free_blocks();
  SequenceId cancelled = decoder().AddSequence();
  ASSERT_TRUE(decoder().Forward({{.sequence = cancelled, .tokens = prompt_}}).ok());
  EXPECT_EQ(decoder().cache().num_free_blocks(), free_before - 3);  // 11 tokens, blocks of 4
  decoder().Release(cancelled);
  EXPECT_EQ(decoder().cache().num_free_blocks(), free_before);
  EXPECT_EQ(decoder().Length(cancelled), 0);
  decoder().Release(keep);
  EXPECT_EQ(decoder().cache().num_free_blocks(), kNumBlocks);
}

TEST_F(DecoderTest, BadStepsChangeNothing) {
  SequenceId seq = decoder().AddSequence();
  ASSERT_TRUE(decoder().Forward({{.sequence = seq, .tokens = prompt_}}).ok());
  const std::vector<int32_t> bad_id = {5, 2048};
  const std::vector<int32_t> image_token = {10};
  const std::vector<int32_t> too_long(kNumBlocks * 4, 5);
  EXPECT_EQ(decoder().Forward({{.sequence = seq, .tokens = bad_id}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoder().Forward({{.sequence = seq, .tokens = image_token}}).status().code(),
            absl::StatusCode::kInvalidArgument);  // [IMG] without features
  EXPECT_EQ(decoder().Forward({{.sequence = seq, .tokens = {}}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoder().Forward({{.sequence = 999, .tokens = prompt_}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      decoder()
          .Forward({{.sequence = seq, .tokens = prompt_}, {.sequence = seq, .tokens = prompt_}})
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoder().Forward({{.sequence = seq, .tokens = too_long}}).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(decoder().Length(seq), 11);
  EXPECT_EQ(decoder().cache().num_free_blocks(), kNumBlocks - 3);
  // Still usable: the sequence continues as if nothing happened.
  const int32_t next = 77;
  std::vector<int32_t> tokens = prompt_;
  tokens.push_back(next);
  auto out = decoder().Forward({{.sequence = seq, .tokens = {&next, 1}}});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LE(RelativeError((*out)[0], FeedInChunks(tokens, {12})), 1e-6);
}

TEST_F(DecoderTest, StepsThatDoNotFitTogetherAreRejectedWhole) {
  // 20 blocks' worth and 16 blocks' worth do not fit in 32 together; neither is applied.
  SequenceId a = decoder().AddSequence(), b = decoder().AddSequence();
  const std::vector<int32_t> big(80, 5), medium(64, 5);
  EXPECT_EQ(decoder()
                .Forward({{.sequence = a, .tokens = big}, {.sequence = b, .tokens = medium}})
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(decoder().cache().num_free_blocks(), kNumBlocks);
  EXPECT_EQ(decoder().Length(a), 0);
  EXPECT_TRUE(decoder().Forward({{.sequence = a, .tokens = big}}).ok());
}

}  // namespace
}  // namespace pixtral
