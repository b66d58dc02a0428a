// Scheduler::PinPrefix: a decoder that tells a sender to leave out the features of cached images
// must still find those images cached when the request is admitted.
#include <optional>
#include <vector>

#include "decoder/generate.h"
#include "engine/block_hash.h"
#include "engine/image_keys.h"
#include "engine/scheduler.h"
#include "engine/testing/fake_runner.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

constexpr int32_t kImg = kFakeImageToken;

// A prompt with one keyed four-row image at positions 3-6, inside the first two blocks of four.
GenerationRequest KeyedRequest(std::vector<int32_t> tail, int first_feature_image) {
  GenerationRequest r = TextRequest({1, 2, 3, kImg, kImg, kImg, kImg, 4, 5}, 3);
  r.prompt.tokens.insert(r.prompt.tokens.end(), tail.begin(), tail.end());
  r.prompt.image_keys = {{.key = HashBytes("pixels", 6), .rows = 4}};
  r.prompt.first_feature_image = first_feature_image;
  if (first_feature_image == 0) r.prompt.image_features.assign(4, 0.5f);
  return r;
}

struct Result {
  std::optional<absl::StatusOr<Completion>> done;
  Scheduler::Callbacks Callbacks() {
    return {.on_done = [this](absl::StatusOr<Completion> c) { done = std::move(c); }};
  }
};

void RunUntilIdle(Scheduler& scheduler) {
  for (int i = 0; scheduler.HasWork() && i < 10000; ++i) scheduler.Step();
}

absl::StatusOr<Completion> RunAlone(Scheduler& scheduler, GenerationRequest request) {
  Result result;
  if (absl::StatusOr<Scheduler::Ticket> t =
          scheduler.Submit(std::move(request), result.Callbacks());
      !t.ok()) {
    return t.status();
  }
  RunUntilIdle(scheduler);
  return *result.done;
}

Scheduler::PrefixPin Pin(Scheduler& scheduler, const Prompt& prompt) {
  std::optional<absl::StatusOr<Scheduler::PrefixPin>> pin;
  EXPECT_TRUE(scheduler.PinPrefix(prompt, [&](auto p) { pin = std::move(p); }).ok());
  scheduler.Step();  // pins are served at the start of a step
  EXPECT_TRUE(pin.has_value() && pin->ok());
  return pin.has_value() && pin->ok() ? **pin : Scheduler::PrefixPin{};
}

// Two text requests that together need every block of an eight-block cache.
void FillTheCache(Scheduler& scheduler) {
  for (int32_t first : {6, 8}) {
    std::vector<int32_t> tokens;
    for (int i = 0; i < 16; ++i) tokens.push_back((first + i) % kFakeVocab == kImg ? 1 : first);
    ASSERT_TRUE(RunAlone(scheduler, TextRequest(tokens, 4)).ok());
  }
}

TEST(SchedulerPinTest, APinnedPrefixSurvivesEvictionAndTheRequestSkipsItsImage) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/8);
  Scheduler scheduler(model, {});
  ASSERT_TRUE(RunAlone(scheduler, KeyedRequest({}, 0)).ok());

  GenerationRequest next = KeyedRequest({7, 8, 9, 11}, 1);  // no features
  const Scheduler::PrefixPin pin = Pin(scheduler, next.prompt);
  ASSERT_NE(pin.id, 0);
  EXPECT_GE(pin.positions, 8);
  EXPECT_EQ(FirstNeededImage(next.prompt, pin.positions, kImg), 1);
  FillTheCache(scheduler);
  EXPECT_GT(model.cache().num_evictions(), 0);

  next.prefix_pin = pin.id;
  absl::StatusOr<Completion> got = RunAlone(scheduler, next);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_GE(model.prepared_from.back(), 8);
  FakeRunner fresh;
  absl::StatusOr<std::vector<Completion>> want =
      Generate(fresh, {KeyedRequest({7, 8, 9, 11}, 0)}, {});
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(got->tokens, (*want)[0].tokens);
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerPinTest, WithoutThePinAnEvictedImageFailsInsteadOfGivingWrongTokens) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/8);
  Scheduler scheduler(model, {});
  ASSERT_TRUE(RunAlone(scheduler, KeyedRequest({}, 0)).ok());
  FillTheCache(scheduler);
  absl::StatusOr<Completion> got = RunAlone(scheduler, KeyedRequest({7, 8, 9, 11}, 1));
  EXPECT_EQ(got.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerPinTest, UnpinGivesTheBlocksBack) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  ASSERT_TRUE(RunAlone(scheduler, KeyedRequest({}, 0)).ok());
  const Scheduler::PrefixPin pin = Pin(scheduler, KeyedRequest({7}, 1).prompt);
  ASSERT_NE(pin.id, 0);
  EXPECT_GT(model.num_used_blocks(), 0);
  scheduler.Unpin(pin.id);
  scheduler.Step();
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerPinTest, ARefusedRequestGivesItsPinBack) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  ASSERT_TRUE(RunAlone(scheduler, KeyedRequest({}, 0)).ok());
  GenerationRequest bad = KeyedRequest({7}, 1);
  bad.prefix_pin = Pin(scheduler, bad.prompt).id;
  bad.max_tokens = -1;
  Result result;
  EXPECT_FALSE(scheduler.Submit(bad, result.Callbacks()).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerPinTest, NothingCachedPinsNothing) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  const Scheduler::PrefixPin pin = Pin(scheduler, KeyedRequest({7}, 0).prompt);
  EXPECT_EQ(pin.id, 0);
  EXPECT_EQ(pin.positions, 0);
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerPinTest, BadKeysAreInvalidAtOnce) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  GenerationRequest wrong_rows = KeyedRequest({}, 1);
  wrong_rows.prompt.image_keys[0].rows = 3;
  bool called = false;
  EXPECT_EQ(scheduler.PinPrefix(wrong_rows.prompt, [&](auto) { called = true; }).code(),
            absl::StatusCode::kInvalidArgument);
  GenerationRequest past_the_end = KeyedRequest({}, 2);
  EXPECT_EQ(scheduler.PinPrefix(past_the_end.prompt, [&](auto) { called = true; }).code(),
            absl::StatusCode::kInvalidArgument);
  scheduler.Step();
  EXPECT_FALSE(called);
}

TEST(SchedulerPinTest, StopAnswersPendingPinsAndReleasesHeldOnes) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  ASSERT_TRUE(RunAlone(scheduler, KeyedRequest({}, 0)).ok());
  ASSERT_NE(Pin(scheduler, KeyedRequest({7}, 1).prompt).id, 0);
  std::optional<absl::StatusOr<Scheduler::PrefixPin>> pending;
  ASSERT_TRUE(scheduler.PinPrefix(KeyedRequest({8}, 1).prompt, [&](auto p) { pending = p; }).ok());
  scheduler.Stop();
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerPinTest, PinsStopAtWhatTheSchedulerCanHold) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/8);
  Scheduler scheduler(model, {.max_batch_size = 1, .max_waiting = 1});
  ASSERT_TRUE(RunAlone(scheduler, KeyedRequest({}, 0)).ok());
  const GenerationRequest next = KeyedRequest({7, 8, 9, 11}, 1);
  const Scheduler::PrefixPin first = Pin(scheduler, next.prompt);
  const Scheduler::PrefixPin second = Pin(scheduler, next.prompt);
  const Scheduler::PrefixPin third = Pin(scheduler, next.prompt);
  EXPECT_NE(first.id, 0);
  EXPECT_NE(second.id, 0);
  EXPECT_EQ(third.id, 0);  // max_batch_size + max_waiting pins already held
  EXPECT_EQ(third.positions, 0);
  scheduler.Unpin(first.id);
  scheduler.Step();
  EXPECT_NE(Pin(scheduler, next.prompt).id, 0);  // room again
}

}  // namespace
}  // namespace pixtral
