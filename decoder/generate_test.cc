#include "decoder/generate.h"

#include <cmath>
#include <map>
#include <vector>

#include "engine/testing/fake_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<Completion> GenerateOk(FakeRunner& model,
                                   const std::vector<GenerationRequest>& requests,
                                   const GenerateOptions& options = {}) {
  absl::StatusOr<std::vector<Completion>> out = Generate(model, requests, options);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::vector<Completion>();
}

TEST(GenerateTest, GreedyFollowsTheModel) {
  FakeRunner model;
  std::vector<Completion> out = GenerateOk(model, {TextRequest({1, 2}, 4)});
  ASSERT_EQ(out.size(), 1u);
  // (3*2+2)%16 = 8, (3*8+3)%16 = 11, (3*11+4)%16 = 5, (3*5+5)%16 = 4.
  EXPECT_THAT(out[0].tokens, ElementsAre(8, 11, 5, 4));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kLength);
  EXPECT_THAT(out[0].logprobs, IsEmpty());
  EXPECT_THAT(model.live, IsEmpty());
  // The prompt's step, then 3 decode steps: the last token is not fed back.
  EXPECT_EQ(model.step_calls, 4);
}

TEST(GenerateTest, BatchedEqualsAlone) {
  std::vector<GenerationRequest> requests = {TextRequest({1, 2, 3}, 6), TextRequest({4}, 3),
                                             TextRequest({5, 6}, 9)};
  for (int i = 0; i < 3; ++i) {
    requests[i].sampling = {.temperature = 1.0f, .top_p = 0.95f, .seed = uint64_t(10 + i)};
    requests[i].logprobs = true;
  }
  FakeRunner batched;
  std::vector<Completion> together = GenerateOk(batched, requests);
  EXPECT_EQ(batched.step_rows.front(), 3);  // the three prompts in one step
  for (int i = 0; i < 3; ++i) {
    FakeRunner alone;
    std::vector<Completion> one = GenerateOk(alone, {requests[i]});
    EXPECT_EQ(together[i].tokens, one[0].tokens) << "request " << i;
    EXPECT_EQ(together[i].logprobs, one[0].logprobs) << "request " << i;
    EXPECT_EQ(together[i].tokens.size(), static_cast<size_t>(requests[i].max_tokens));
  }
  EXPECT_THAT(batched.live, IsEmpty());
}

TEST(GenerateTest, LogprobsAreRawLogSoftmax) {
  FakeRunner model;
  GenerationRequest r = TextRequest({1, 2}, 3);
  r.logprobs = true;
  std::vector<Completion> out = GenerateOk(model, {r});
  ASSERT_EQ(out[0].logprobs.size(), 3u);
  int32_t last = 2;
  int len = 2;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<float> row = FakeRunner::Logits(last, len);
    double sum = 0;
    for (float x : row) sum += std::exp(x);
    EXPECT_NEAR(out[0].logprobs[i], row[out[0].tokens[i]] - std::log(sum), 1e-5);
    last = out[0].tokens[i];
    ++len;
  }
}

TEST(GenerateTest, StopsAtEosUnlessIgnored) {
  // Greedy from {1, 2}: 8, 11, 5, 4, ...; make 5 the EOS.
  FakeRunner model;
  std::vector<Completion> out = GenerateOk(model, {TextRequest({1, 2}, 10)}, {.eos_id = 5});
  EXPECT_THAT(out[0].tokens, ElementsAre(8, 11));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kEos);
  EXPECT_THAT(model.live, IsEmpty());

  GenerationRequest r = TextRequest({1, 2}, 4);
  r.ignore_eos = true;
  out = GenerateOk(model, {r}, {.eos_id = 5});
  EXPECT_THAT(out[0].tokens, ElementsAre(8, 11, 5, 4));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kLength);
}

TEST(GenerateTest, StopsAtStopTokenIds) {
  FakeRunner model;
  GenerationRequest r = TextRequest({1, 2}, 10);
  r.stop_token_ids = {4, 11};
  r.ignore_eos = true;  // stop ids still stop
  std::vector<Completion> out = GenerateOk(model, {r}, {.eos_id = 5});
  EXPECT_THAT(out[0].tokens, ElementsAre(8));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kStopToken);
}

TEST(GenerateTest, StreamsEveryTokenInOrder) {
  FakeRunner model;
  std::map<int, std::vector<int32_t>> streamed;
  GenerateOptions options;
  options.on_token = [&](int request, const SampledToken& t) {
    streamed[request].push_back(t.id);
    return true;
  };
  std::vector<Completion> out =
      GenerateOk(model, {TextRequest({1, 2}, 4), TextRequest({3}, 2)}, options);
  EXPECT_EQ(streamed[0], out[0].tokens);
  EXPECT_EQ(streamed[1], out[1].tokens);
}

TEST(GenerateTest, CallbackCancelsOneRequestAndFreesItsCache) {
  FakeRunner model;
  GenerateOptions options;
  options.on_token = [&](int request, const SampledToken&) {
    if (request == 0) {
      EXPECT_EQ(model.live.size(), 2u);
      return false;
    }
    return true;
  };
  std::vector<Completion> out =
      GenerateOk(model, {TextRequest({1, 2}, 5), TextRequest({3}, 5)}, options);
  EXPECT_EQ(out[0].finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(out[0].tokens.size(), 1u);
  EXPECT_EQ(out[1].tokens.size(), 5u);
  EXPECT_EQ(model.step_rows[1], 1);  // the cancelled one no longer decodes
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(GenerateTest, ZeroMaxTokensRunsNothing) {
  FakeRunner model;
  std::vector<Completion> out = GenerateOk(model, {TextRequest({1}, 0)});
  EXPECT_THAT(out[0].tokens, IsEmpty());
  EXPECT_EQ(model.step_calls, 0);
}

TEST(GenerateTest, InvalidRequestsFailBeforeTheModelRuns) {
  FakeRunner model;
  GenerationRequest bad_temperature = TextRequest({1}, 3);
  bad_temperature.sampling.temperature = -1.0f;
  GenerationRequest bad_top_p = TextRequest({1}, 3);
  bad_top_p.sampling.top_p = 0.0f;
  for (const GenerationRequest& bad :
       {bad_temperature, bad_top_p, TextRequest({1}, -1), TextRequest({}, 3)}) {
    absl::StatusOr<std::vector<Completion>> out = Generate(model, {TextRequest({1}, 3), bad}, {});
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  }
  EXPECT_EQ(model.step_calls, 0);
}

TEST(GenerateTest, ModelErrorsPassThroughAndReleaseEverything) {
  FakeRunner model;
  absl::StatusOr<std::vector<Completion>> out = Generate(model, {TextRequest({1, 99}, 3)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);

  FakeRunner small(/*block_size=*/4, /*num_blocks=*/2);
  out = Generate(small, {TextRequest({1, 2}, 20)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);

  model.poison_token = 3;
  out = Generate(model, {TextRequest({1, 2}, 5), TextRequest({3}, 5)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(model.live, IsEmpty());
  EXPECT_EQ(model.cache().num_used_blocks(), 0);

  // The model is still usable.
  model.poison_token = -1;
  std::vector<Completion> ok = GenerateOk(model, {TextRequest({1, 2}, 4)});
  EXPECT_THAT(ok[0].tokens, ElementsAre(8, 11, 5, 4));
}

}  // namespace
}  // namespace pixtral
