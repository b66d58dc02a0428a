#include "decoder/scheduler.h"

#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "decoder/testing/fake_sequence_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;

// Collects what the callbacks report for one request.
struct Outcome {
  std::vector<int32_t> streamed;
  std::optional<absl::StatusOr<Completion>> done;
  int done_calls = 0;

  Scheduler::Callbacks Callbacks(int cancel_after = -1) {
    return {.on_token =
                [this, cancel_after](const SampledToken& t) {
                  streamed.push_back(t.id);
                  return static_cast<int>(streamed.size()) != cancel_after;
                },
            .on_done =
                [this](absl::StatusOr<Completion> c) {
                  done = std::move(c);
                  ++done_calls;
                }};
  }
};

void RunUntilIdle(Scheduler& scheduler) {
  while (scheduler.HasWork()) scheduler.Step();
}

// The greedy tokens a request gets when it runs alone.
std::vector<int32_t> Alone(const GenerationRequest& request) {
  FakeSequenceModel model;
  absl::StatusOr<std::vector<Completion>> out = Generate(model, {request}, {});
  EXPECT_TRUE(out.ok());
  return out.ok() ? (*out)[0].tokens : std::vector<int32_t>{};
}

TEST(SchedulerTest, RequestsJoinAndLeaveTheRunningBatch) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {});
  Outcome a, b;
  const GenerationRequest request_a = TextRequest({1, 2}, 6);
  const GenerationRequest request_b = TextRequest({7}, 2);
  ASSERT_TRUE(scheduler.Submit(request_a, a.Callbacks()).ok());
  scheduler.Step();
  scheduler.Step();
  ASSERT_TRUE(scheduler.Submit(request_b, b.Callbacks()).ok());  // joins mid-flight
  RunUntilIdle(scheduler);

  ASSERT_TRUE(a.done.has_value() && a.done->ok());
  ASSERT_TRUE(b.done.has_value() && b.done->ok());
  EXPECT_EQ((*a.done)->tokens, Alone(request_a));
  EXPECT_EQ((*b.done)->tokens, Alone(request_b));
  EXPECT_EQ(a.streamed, (*a.done)->tokens);
  // A alone for two steps, then A and B together, then A alone again once B has left.
  EXPECT_THAT(model.decode_batch_sizes, ElementsAre(1, 1, 2, 1, 1));
  EXPECT_EQ(model.prefill_calls, 2);
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(SchedulerTest, CancelFreesTheCacheAtTheNextStep) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {});
  Outcome a;
  absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(TextRequest({1}, 100), a.Callbacks());
  ASSERT_TRUE(ticket.ok());
  scheduler.Step();
  EXPECT_EQ(model.live.size(), 1u);
  scheduler.Cancel(*ticket);
  scheduler.Step();
  EXPECT_THAT(model.live, IsEmpty());
  ASSERT_TRUE(a.done.has_value() && a.done->ok());
  EXPECT_EQ((*a.done)->finish_reason, FinishReason::kCancelled);
  EXPECT_FALSE(scheduler.HasWork());
  scheduler.Cancel(*ticket);  // a finished ticket is ignored
  EXPECT_EQ(a.done_calls, 1);
}

TEST(SchedulerTest, CancelBeforeAdmissionNeverTouchesTheModel) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {});
  Outcome a;
  absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(TextRequest({1}, 5), a.Callbacks());
  scheduler.Cancel(*ticket);
  RunUntilIdle(scheduler);
  EXPECT_EQ(model.prefill_calls, 0);
  EXPECT_EQ((*a.done)->finish_reason, FinishReason::kCancelled);
}

TEST(SchedulerTest, CallbackReturningFalseCancels) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {});
  Outcome a;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 50), a.Callbacks(/*cancel_after=*/3)).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ((*a.done)->finish_reason, FinishReason::kCancelled);
  EXPECT_EQ((*a.done)->tokens.size(), 3u);
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(SchedulerTest, FullQueueIsResourceExhausted) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {.max_waiting = 2});
  Outcome a, b, c;
  EXPECT_TRUE(scheduler.Submit(TextRequest({1}, 3), a.Callbacks()).ok());
  EXPECT_TRUE(scheduler.Submit(TextRequest({1}, 3), b.Callbacks()).ok());
  absl::StatusOr<Scheduler::Ticket> third = scheduler.Submit(TextRequest({1}, 3), c.Callbacks());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(c.done.has_value());
  RunUntilIdle(scheduler);
  EXPECT_TRUE(a.done->ok() && b.done->ok());
}

TEST(SchedulerTest, InvalidRequestsAreRejectedAtSubmit) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {});
  Outcome a;
  EXPECT_EQ(scheduler.Submit(TextRequest({}, 3), a.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.Submit(TextRequest({1}, -1), a.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
  GenerationRequest hot = TextRequest({1}, 3);
  hot.sampling.temperature = -1;
  EXPECT_EQ(scheduler.Submit(hot, a.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(a.done.has_value());
}

TEST(SchedulerTest, ABadPromptFailsOnlyItself) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {});
  Outcome good, bad;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, 2}, 4), good.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, kFakeVocab + 5}, 4), bad.Callbacks()).ok());
  RunUntilIdle(scheduler);
  ASSERT_TRUE(good.done->ok());
  EXPECT_EQ((*good.done)->tokens, Alone(TextRequest({1, 2}, 4)));
  EXPECT_EQ(bad.done->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(SchedulerTest, OutOfCacheWaitsForRunningRequestsToFinish) {
  FakeSequenceModel model;
  model.max_total_capacity = 12;  // room for one request of 2 + 8 at a time
  Scheduler scheduler(model, {});
  Outcome a, b;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, 2}, 8), a.Callbacks()).ok());
  scheduler.Step();
  ASSERT_TRUE(scheduler.Submit(TextRequest({3, 4}, 8), b.Callbacks()).ok());
  RunUntilIdle(scheduler);
  ASSERT_TRUE(a.done->ok());
  ASSERT_TRUE(b.done->ok()) << b.done->status();
  EXPECT_EQ((*b.done)->tokens, Alone(TextRequest({3, 4}, 8)));
  // Never two at once.
  for (int size : model.decode_batch_sizes) EXPECT_EQ(size, 1);
}

TEST(SchedulerTest, RequestThatCanNeverFitFails) {
  FakeSequenceModel model;
  model.max_total_capacity = 5;
  Scheduler scheduler(model, {});
  Outcome a;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, 2}, 8), a.Callbacks()).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ(a.done->status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(SchedulerTest, DecodeFailureEndsTheBatchAndTheSchedulerStaysUsable) {
  FakeSequenceModel model;
  model.fail_decode_call = 2;
  Scheduler scheduler(model, {});
  Outcome a, b, c;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 5), a.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(TextRequest({2}, 5), b.Callbacks()).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ(a.done->status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(b.done->status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(model.live, IsEmpty());
  ASSERT_TRUE(scheduler.Submit(TextRequest({3}, 4), c.Callbacks()).ok());
  RunUntilIdle(scheduler);
  ASSERT_TRUE(c.done->ok());
  EXPECT_EQ((*c.done)->tokens, Alone(TextRequest({3}, 4)));
}

TEST(SchedulerTest, BatchSizeIsCapped) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {.max_batch_size = 2});
  Outcome outcomes[5];
  for (Outcome& o : outcomes)
    ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 3), o.Callbacks()).ok());
  RunUntilIdle(scheduler);
  for (Outcome& o : outcomes) EXPECT_TRUE(o.done->ok());
  for (int size : model.decode_batch_sizes) EXPECT_LE(size, 2);
}

TEST(SchedulerTest, OnStepReportsQueueBatchAndWaits) {
  FakeSequenceModel model;
  std::vector<Scheduler::StepStats> steps;
  Scheduler scheduler(model, {.max_batch_size = 2, .on_step = [&](const Scheduler::StepStats& s) {
                                steps.push_back(s);
                              }});
  Outcome outcomes[3];
  for (Outcome& o : outcomes) {
    ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 2), o.Callbacks()).ok());
  }
  RunUntilIdle(scheduler);
  ASSERT_GE(steps.size(), 3u);
  // Step 1: two admitted (the cap), one left waiting, both decoded.
  EXPECT_EQ(steps[0].queue_seconds.size(), 2u);
  EXPECT_EQ(steps[0].waiting, 1);
  EXPECT_EQ(steps[0].running, 2);
  EXPECT_EQ(steps[0].decoded, 2);
  for (double wait : steps[0].queue_seconds) EXPECT_GE(wait, 0);
  // Each decode step's size matches the model's own record; every request was admitted once.
  std::vector<int> decoded;
  size_t admitted = 0;
  for (const Scheduler::StepStats& s : steps) {
    if (s.decoded > 0) decoded.push_back(s.decoded);
    admitted += s.queue_seconds.size();
  }
  EXPECT_EQ(decoded, model.decode_batch_sizes);
  EXPECT_EQ(admitted, 3u);
  EXPECT_EQ(steps.back().running, 0);
  EXPECT_EQ(steps.back().waiting, 0);
}

TEST(SchedulerTest, ThreadServesConcurrentSubmittersWithTheirOwnTokens) {
  FakeSequenceModel model;
  Scheduler scheduler(model, {.max_batch_size = 8});
  scheduler.Start();
  constexpr int kClients = 32;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < kClients; ++i) {
    requests.push_back(TextRequest({i % kFakeVocab, (i * 7) % kFakeVocab}, 3 + i % 5));
    if (i % 2) requests.back().sampling = {.temperature = 0.8f, .top_p = 0.9f, .seed = uint64_t(i)};
  }
  std::vector<Outcome> outcomes(kClients);
  std::vector<absl::Notification> finished(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      Scheduler::Callbacks callbacks = outcomes[i].Callbacks();
      auto on_done = callbacks.on_done;
      callbacks.on_done = [&, i, on_done](absl::StatusOr<Completion> c) {
        on_done(std::move(c));
        finished[i].Notify();
      };
      ASSERT_TRUE(scheduler.Submit(requests[i], std::move(callbacks)).ok());
      finished[i].WaitForNotification();
    });
  }
  for (std::thread& t : clients) t.join();
  scheduler.Stop();
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(outcomes[i].done->ok()) << i;
    FakeSequenceModel alone_model;
    auto alone = Generate(alone_model, {requests[i]}, {});
    ASSERT_TRUE(alone.ok());
    EXPECT_THAT((*outcomes[i].done)->tokens, ElementsAreArray((*alone)[0].tokens)) << i;
  }
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(SchedulerTest, StopCancelsWhatIsLeft) {
  FakeSequenceModel model;
  Outcome running, waiting;
  {
    Scheduler scheduler(model, {.max_batch_size = 1});
    ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 100), running.Callbacks()).ok());
    ASSERT_TRUE(scheduler.Submit(TextRequest({2}, 100), waiting.Callbacks()).ok());
    scheduler.Step();
    scheduler.Stop();
    EXPECT_EQ(scheduler.Submit(TextRequest({1}, 1), Outcome().Callbacks()).status().code(),
              absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ((*running.done)->finish_reason, FinishReason::kCancelled);
  EXPECT_EQ((*waiting.done)->finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(running.done_calls, 1);
  EXPECT_EQ(waiting.done_calls, 1);
  EXPECT_THAT(model.live, IsEmpty());
}

}  // namespace
}  // namespace pixtral
