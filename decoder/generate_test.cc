#include "decoder/generate.h"

#include <cmath>
#include <map>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int kVocab = 16;

// Scripted logits: after a sequence of length `len` ending in `last`, token (3 * last + len) %
// kVocab is the clear favourite and the others get small, distinct logits, so sampling at
// temperature 1 still spreads. Checks that the loop never exceeds a sequence's capacity.
class FakeModel : public SequenceModel {
 public:
  static std::vector<float> Logits(int32_t last, int len) {
    std::vector<float> row(kVocab);
    for (int v = 0; v < kVocab; ++v) row[v] = 0.1f * v;
    row[(3 * last + len) % kVocab] = 3.0f;
    return row;
  }

  int vocab_size() const override { return kVocab; }

  absl::StatusOr<PrefillResult> Prefill(absl::Span<const Prompt* const> prompts,
                                        absl::Span<const int> capacities) override {
    ++prefill_calls;
    PrefillResult result;
    for (size_t i = 0; i < prompts.size(); ++i) {
      for (int32_t t : prompts[i]->tokens) {
        if (t < 0 || t >= kVocab) return absl::InvalidArgumentError("token out of range");
      }
      if (capacities[i] > max_capacity) return absl::ResourceExhaustedError("cache full");
    }
    for (size_t i = 0; i < prompts.size(); ++i) {
      const int len = static_cast<int>(prompts[i]->tokens.size());
      const SequenceId id = next_id++;
      live[id] = {prompts[i]->tokens.back(), len, capacities[i]};
      result.ids.push_back(id);
      std::vector<float> row = Logits(prompts[i]->tokens.back(), len);
      result.logits.insert(result.logits.end(), row.begin(), row.end());
    }
    return result;
  }

  absl::StatusOr<std::vector<float>> Decode(absl::Span<const SequenceId> ids,
                                            absl::Span<const int32_t> tokens) override {
    decode_batch_sizes.push_back(static_cast<int>(ids.size()));
    if (fail_decode_call == static_cast<int>(decode_batch_sizes.size())) {
      return absl::InternalError("injected failure");
    }
    std::vector<float> logits;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = live.find(ids[i]);
      if (it == live.end()) return absl::InternalError("decode of an unknown sequence");
      Sequence& s = it->second;
      if (s.len + 1 > s.capacity) return absl::InternalError("capacity exceeded");
      s.last = tokens[i];
      ++s.len;
      std::vector<float> row = Logits(s.last, s.len);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    return logits;
  }

  void Release(SequenceId id) override { live.erase(id); }

  struct Sequence {
    int32_t last;
    int len;
    int capacity;
  };
  std::map<SequenceId, Sequence> live;
  SequenceId next_id = 100;
  int max_capacity = 1000;
  int prefill_calls = 0;
  int fail_decode_call = -1;  // 1-based Decode call that fails
  std::vector<int> decode_batch_sizes;
};

GenerationRequest Request(std::vector<int32_t> tokens, int max_tokens) {
  GenerationRequest r;
  r.prompt.tokens = std::move(tokens);
  r.max_tokens = max_tokens;
  return r;
}

std::vector<Completion> GenerateOk(FakeModel& model, const std::vector<GenerationRequest>& requests,
                                   const GenerateOptions& options = {}) {
  absl::StatusOr<std::vector<Completion>> out = Generate(model, requests, options);
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? *out : std::vector<Completion>();
}

TEST(GenerateTest, GreedyFollowsTheModel) {
  FakeModel model;
  std::vector<Completion> out = GenerateOk(model, {Request({1, 2}, 4)});
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
  std::vector<GenerationRequest> requests = {Request({1, 2, 3}, 6), Request({4}, 3),
                                             Request({5, 6}, 9)};
  for (int i = 0; i < 3; ++i) {
    requests[i].sampling = {.temperature = 1.0f, .top_p = 0.95f, .seed = uint64_t(10 + i)};
    requests[i].logprobs = true;
  }
  FakeModel batched;
  std::vector<Completion> together = GenerateOk(batched, requests);
  EXPECT_EQ(batched.prefill_calls, 1);
  EXPECT_EQ(batched.decode_batch_sizes.front(), 3);
  for (int i = 0; i < 3; ++i) {
    FakeModel alone;
    std::vector<Completion> one = GenerateOk(alone, {requests[i]});
    EXPECT_EQ(together[i].tokens, one[0].tokens) << "request " << i;
    EXPECT_EQ(together[i].logprobs, one[0].logprobs) << "request " << i;
    EXPECT_EQ(together[i].tokens.size(), static_cast<size_t>(requests[i].max_tokens));
  }
  EXPECT_THAT(batched.live, IsEmpty());
}

TEST(GenerateTest, LogprobsAreRawLogSoftmax) {
  FakeModel model;
  GenerationRequest r = Request({1, 2}, 3);
  r.logprobs = true;
  std::vector<Completion> out = GenerateOk(model, {r});
  ASSERT_EQ(out[0].logprobs.size(), 3u);
  int32_t last = 2;
  int len = 2;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<float> row = FakeModel::Logits(last, len);
    double sum = 0;
    for (float x : row) sum += std::exp(x);
    EXPECT_NEAR(out[0].logprobs[i], row[out[0].tokens[i]] - std::log(sum), 1e-5);
    last = out[0].tokens[i];
    ++len;
  }
}

TEST(GenerateTest, StopsAtEosUnlessIgnored) {
  // Greedy from {1, 2}: 8, 11, 5, 4, ...; make 5 the EOS.
  FakeModel model;
  std::vector<Completion> out = GenerateOk(model, {Request({1, 2}, 10)}, {.eos_id = 5});
  EXPECT_THAT(out[0].tokens, ElementsAre(8, 11));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kEos);
  EXPECT_THAT(model.live, IsEmpty());

  GenerationRequest r = Request({1, 2}, 4);
  r.ignore_eos = true;
  out = GenerateOk(model, {r}, {.eos_id = 5});
  EXPECT_THAT(out[0].tokens, ElementsAre(8, 11, 5, 4));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kLength);
}

TEST(GenerateTest, StopsAtStopTokenIds) {
  FakeModel model;
  GenerationRequest r = Request({1, 2}, 10);
  r.stop_token_ids = {4, 11};
  r.ignore_eos = true;  // stop ids still stop
  std::vector<Completion> out = GenerateOk(model, {r}, {.eos_id = 5});
  EXPECT_THAT(out[0].tokens, ElementsAre(8));
  EXPECT_EQ(out[0].finish_reason, FinishReason::kStopToken);
}

TEST(GenerateTest, StreamsEveryTokenInOrder) {
  FakeModel model;
  std::map<int, std::vector<int32_t>> streamed;
  GenerateOptions options;
  options.on_token = [&](int request, const SampledToken& t) {
    streamed[request].push_back(t.id);
    return true;
  };
  std::vector<Completion> out = GenerateOk(model, {Request({1, 2}, 4), Request({3}, 2)}, options);
  EXPECT_EQ(streamed[0], out[0].tokens);
  EXPECT_EQ(streamed[1], out[1].tokens);
}

TEST(GenerateTest, CallbackCancelsOneRequestAndFreesItsCache) {
  FakeModel model;
  GenerateOptions options;
  options.on_token = [&](int request, const SampledToken&) {
    if (request == 0) {
      EXPECT_EQ(model.live.size(), 2u);
      return false;
    }
    return true;
  };
  std::vector<Completion> out = GenerateOk(model, {Request({1, 2}, 5), Request({3}, 5)}, options);
  EXPECT_EQ(out[0].finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(out[0].tokens.size(), 1u);
  EXPECT_EQ(out[1].tokens.size(), 5u);
  EXPECT_EQ(model.decode_batch_sizes.front(), 1);  // the cancelled one no longer decodes
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(GenerateTest, ZeroMaxTokensRunsNothing) {
  FakeModel model;
  std::vector<Completion> out = GenerateOk(model, {Request({1}, 0)});
  EXPECT_THAT(out[0].tokens, IsEmpty());
  EXPECT_EQ(model.prefill_calls, 0);
}

TEST(GenerateTest, InvalidRequestsFailBeforeTheModelRuns) {
  FakeModel model;
  GenerationRequest bad_temperature = Request({1}, 3);
  bad_temperature.sampling.temperature = -1.0f;
  GenerationRequest bad_top_p = Request({1}, 3);
  bad_top_p.sampling.top_p = 0.0f;
  for (const GenerationRequest& bad :
       {bad_temperature, bad_top_p, Request({1}, -1), Request({}, 3)}) {
    absl::StatusOr<std::vector<Completion>> out = Generate(model, {Request({1}, 3), bad}, {});
    EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument) << out.status();
  }
  EXPECT_EQ(model.prefill_calls, 0);
}

TEST(GenerateTest, ModelErrorsPassThroughAndReleaseEverything) {
  FakeModel model;
  absl::StatusOr<std::vector<Completion>> out = Generate(model, {Request({1, 99}, 3)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);

  model.max_capacity = 10;
  out = Generate(model, {Request({1, 2}, 20)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted);
  model.max_capacity = 1000;

  model.fail_decode_call = 2;
  out = Generate(model, {Request({1, 2}, 5), Request({3}, 5)}, {});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(model.live, IsEmpty());

  // The model is still usable.
  model.fail_decode_call = -1;
  std::vector<Completion> ok = GenerateOk(model, {Request({1, 2}, 4)});
  EXPECT_THAT(ok[0].tokens, ElementsAre(8, 11, 5, 4));
}

}  // namespace
}  // namespace pixtral
