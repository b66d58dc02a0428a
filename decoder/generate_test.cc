#include "decoder/generate.h"

#include <cmath>
#include <map>
#include <vector>

#include "decoder/testing/fake_sequence_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<Completion> GenerateOk(FakeSequenceModel& model,
                                   const std::vector<GenerationRequest>& requests,
                                   const GenerateOptions& options = {}) {
  absl::StatusOr<std::vector<Completion>> out = Generate(model, requests, options);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::vector<Completion>();
}

TEST(GenerateTest, GreedyFollowsTheModel) {
  FakeSequenceModel model;
  std::vector<Completion> out = GenerateOk(model, {TextRequest({1, 2}, 4)});
  ASSERT_EQ(out.size(), 1u);
  // (3*2+2)%16 = 8, (3*8+3)%16 = 11, (3*11+4)%16 = 5, (3*5+5)%16 = 4.
  EXPECT_THAT(out[0].tokens, ElementsAre(8, 11, 5, 4));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kLength);
  EXPECT_THAT(out[0].logprobs, IsEmpty());
  EXPECT_THAT(model.live, IsEmpty());
  // The last token is not fed back: 3 decode steps for 4 tokens.
  EXPECT_EQ(model.decode_batch_sizes.size(), 3u);
}

TEST(GenerateTest, BatchedEqualsAlone) {
  std::vector<GenerationRequest> requests = {TextRequest({1, 2, 3}, 6), TextRequest({4}, 3),
                                             TextRequest({5, 6}, 9)};
  for (int i = 0; i < 3; ++i) {
    requests[i].sampling = {.temperature = 1.0f, .top_p = 0.95f, .seed = uint64_t(10 + i)};
    requests[i].logprobs = true;
  }
  FakeSequenceModel batched;
  std::vector<Completion> together = GenerateOk(batched, requests);
  EXPECT_EQ(batched.prefill_calls, 1);
  EXPECT_EQ(batched.decode_batch_sizes.front(), 3);
  for (int i = 0; i < 3; ++i) {
    FakeSequenceModel alone;
    std::vector<Completion> one = GenerateOk(alone, {requests[i]});
    EXPECT_EQ(together[i].tokens, one[0].tokens) << "request " << i;
    EXPECT_EQ(together[i].logprobs, one[0].logprobs) << "request " << i;
    EXPECT_EQ(together[i].tokens.size(), static_cast<size_t>(requests[i].max_tokens));
  }
  EXPECT_THAT(batched.live, IsEmpty());
}

TEST(GenerateTest, LogprobsAreRawLogSoftmax) {
  FakeSequenceModel model;
  GenerationRequest r = TextRequest({1, 2}, 3);
  r.logprobs = true;
  std::vector<Completion> out = GenerateOk(model, {r});
  ASSERT_EQ(out[0].logprobs.size(), 3u);
  int32_t last = 2;
  int len = 2;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<float> row = FakeSequenceModel::Logits(last, len);
    double sum = 0;
    for (float x : row) sum += std::exp(x);
    EXPECT_NEAR(out[0].logprobs[i], row[out[0].tokens[i]] - std::log(sum), 1e-5);
    last = out[0].tokens[i];
    ++len;
  }
}

TEST(GenerateTest, StopsAtEosUnlessIgnored) {
  // Greedy from {1, 2}: 8, 11, 5, 4, ...; make 5 the EOS.
  FakeSequenceModel model;
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
  FakeSequenceModel model;
  GenerationRequest r = TextRequest({1, 2}, 10);
  r.stop_token_ids = {4, 11};
  r.ignore_eos = true;  // stop ids still stop
  std::vector<Completion> out = GenerateOk(model, {r}, {.eos_id = 5});
  EXPECT_THAT(out[0].tokens, ElementsAre(8));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kStopToken);
}

TEST(GenerateTest, StreamsEveryTokenInOrder) {
  FakeSequenceModel model;
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
  FakeSequenceModel model;
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
  EXPECT_EQ(model.decode_batch_sizes.front(), 1);  // the cancelled one no longer decodes
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(GenerateTest, ZeroMaxTokensRunsNothing) {
  FakeSequenceModel model;
  std::vector<Completion> out = GenerateOk(model, {TextRequest({1}, 0)});
  EXPECT_THAT(out[0].tokens, IsEmpty());
  EXPECT_EQ(model.prefill_calls, 0);
}

TEST(GenerateTest, InvalidRequestsFailBeforeTheModelRuns) {
  FakeSequenceModel model;
  GenerationRequest bad_temperature = TextRequest({1}, 3);
  bad_temperature.sampling.temperature = -1.0f;
  GenerationRequest bad_top_p = TextRequest({1}, 3);
  bad_top_p.sampling.top_p = 0.0f;
  for (const GenerationRequest& bad :
       {bad_temperature, bad_top_p, TextRequest({1}, -1), TextRequest({}, 3)}) {
    absl::StatusOr<std::vector<Completion>> out = Generate(model, {TextRequest({1}, 3), bad}, {});
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  }
  EXPECT_EQ(model.prefill_calls, 0);
}

TEST(GenerateTest, ModelErrorsPassThroughAndReleaseEverything) {
  FakeSequenceModel model;
  absl::StatusOr<std::vector<Completion>> out = Generate(model, {TextRequest({1, 99}, 3)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);

  model.max_capacity = 10;
  out = Generate(model, {TextRequest({1, 2}, 20)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  model.max_capacity = 1000;

  model.fail_decode_call = 2;
  out = Generate(model, {TextRequest({1, 2}, 5), TextRequest({3}, 5)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(model.live, IsEmpty());

  // The model is still usable.
  model.fail_decode_call = -1;
  std::vector<Completion> ok = GenerateOk(model, {TextRequest({1, 2}, 4)});
  EXPECT_THAT(ok[0].tokens, ElementsAre(8, 11, 5, 4));
}

}  // namespace
}  // namespace pixtral
