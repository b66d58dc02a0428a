#include "engine/scheduler.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "decoder/generate.h"
#include "engine/testing/fake_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::Le;

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
  bool ok() const { return done.has_value() && done->ok(); }
  const std::vector<int32_t>& tokens() const { return (*done)->tokens; }
};

void RunUntilIdle(Scheduler& scheduler) {
  for (int i = 0; scheduler.HasWork() && i < 100000; ++i) scheduler.Step();
  ASSERT_FALSE(scheduler.HasWork()) << "the scheduler never went idle";
}

// The tokens a request gets when it runs alone, on a cache that never runs short.
std::vector<int32_t> Alone(const GenerationRequest& request) {
  FakeRunner model;
  absl::StatusOr<std::vector<Completion>> out = Generate(model, {request}, {});
  EXPECT_TRUE(out.ok()) << out.status();
  return out.ok() ? (*out)[0].tokens : std::vector<int32_t>{};
}

std::vector<int32_t> Range(int32_t first, int n) {
  std::vector<int32_t> v;
  for (int i = 0; i < n; ++i) v.push_back((first + i) % kFakeVocab);
  return v;
}

TEST(SchedulerTest, RequestsJoinAndLeaveTheRunningBatch) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  Outcome a, b;
  const GenerationRequest request_a = TextRequest({1, 2}, 6);
  const GenerationRequest request_b = TextRequest({7}, 2);
  ASSERT_TRUE(scheduler.Submit(request_a, a.Callbacks()).ok());
  scheduler.Step();
  scheduler.Step();
  ASSERT_TRUE(scheduler.Submit(request_b, b.Callbacks()).ok());  // joins mid-flight
  RunUntilIdle(scheduler);

  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.tokens(), Alone(request_a));
  EXPECT_EQ(b.tokens(), Alone(request_b));
  EXPECT_EQ(a.streamed, a.tokens());
  // A's prompt, A alone, then A's decode row and B's prompt in one step, both decoding, A alone.
  EXPECT_THAT(model.step_rows, ElementsAre(1, 1, 2, 2, 1, 1));
  EXPECT_THAT(model.live, IsEmpty());
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerTest, OnStepReportsQueueRowsWaitsAndBlocks) {
  FakeRunner model;
  std::vector<Scheduler::StepStats> steps;
  std::vector<int> used_blocks;  // the model's own count after each step
  Scheduler scheduler(model, {.max_batch_size = 2, .on_step = [&](const Scheduler::StepStats& s) {
                                steps.push_back(s);
                                used_blocks.push_back(model.num_used_blocks());
                              }});
  Outcome outcomes[3];
  for (Outcome& o : outcomes) {
    ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 2), o.Callbacks()).ok());
  }
  RunUntilIdle(scheduler);
  ASSERT_GE(steps.size(), 3u);
  // Step 1: two admitted (the cap), one left waiting, both prompts in the model call.
  EXPECT_EQ(steps[0].queue_seconds.size(), 2u);
  EXPECT_EQ(steps[0].waiting, 1);
  EXPECT_EQ(steps[0].running, 2);
  EXPECT_EQ(steps[0].rows, 2);
  EXPECT_GT(steps[0].kv_blocks_used, 0);
  for (double wait : steps[0].queue_seconds) EXPECT_GE(wait, 0);
  // Each step's rows match the model's own record; every request was admitted once.
  std::vector<int> rows, blocks;
  size_t admitted = 0;
  for (const Scheduler::StepStats& s : steps) {
    if (s.rows > 0) rows.push_back(s.rows);
    blocks.push_back(s.kv_blocks_used);
    admitted += s.queue_seconds.size();
  }
  EXPECT_EQ(rows, model.step_rows);
  EXPECT_EQ(blocks, used_blocks);
  EXPECT_EQ(admitted, 3u);
  EXPECT_EQ(steps.back().running, 0);
  EXPECT_EQ(steps.back().waiting, 0);
  EXPECT_EQ(steps.back().kv_blocks_used, 0);
}

TEST(SchedulerTest, CancelFreesTheCacheAtTheNextStep) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  Outcome a;
  absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(TextRequest({1}, 100), a.Callbacks());
  ASSERT_TRUE(ticket.ok());
  scheduler.Step();
  EXPECT_EQ(model.live.size(), 1u);
  scheduler.Cancel(*ticket);
  scheduler.Step();
  EXPECT_THAT(model.live, IsEmpty());
  EXPECT_EQ(model.num_used_blocks(), 0);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a.done)->finish_reason, FinishReason::kCancelled);
  EXPECT_FALSE(scheduler.HasWork());
  scheduler.Cancel(*ticket);  // a finished ticket is ignored
  EXPECT_EQ(a.done_calls, 1);
}

TEST(SchedulerTest, CancelBeforeAdmissionNeverTouchesTheModel) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  Outcome a;
  absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(TextRequest({1}, 5), a.Callbacks());
  scheduler.Cancel(*ticket);
  RunUntilIdle(scheduler);
  EXPECT_EQ(model.step_calls, 0);
  EXPECT_EQ((*a.done)->finish_reason, FinishReason::kCancelled);
}

TEST(SchedulerTest, CallbackReturningFalseCancels) {
  FakeRunner model;
  Scheduler scheduler(model, {});
  Outcome a;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 50), a.Callbacks(/*cancel_after=*/3)).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ((*a.done)->finish_reason, FinishReason::kCancelled);
  EXPECT_EQ(a.tokens().size(), 3u);
  EXPECT_THAT(model.live, IsEmpty());
}

TEST(SchedulerTest, FullQueueIsResourceExhausted) {
  FakeRunner model;
  Scheduler scheduler(model, {.max_waiting = 2});
  Outcome a, b, c;
  EXPECT_TRUE(scheduler.Submit(TextRequest({1}, 3), a.Callbacks()).ok());
  EXPECT_TRUE(scheduler.Submit(TextRequest({1}, 3), b.Callbacks()).ok());
  absl::StatusOr<Scheduler::Ticket> third = scheduler.Submit(TextRequest({1}, 3), c.Callbacks());
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(c.done.has_value());
  RunUntilIdle(scheduler);
  EXPECT_TRUE(a.ok() && b.ok());
}

TEST(SchedulerTest, InvalidRequestsAreRejectedAtSubmit) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/4);
  Scheduler scheduler(model, {});
  Outcome a;
  EXPECT_EQ(scheduler.Submit(TextRequest({}, 3), a.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.Submit(TextRequest({1}, -1), a.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(scheduler.Submit(TextRequest({1, kFakeVocab + 5}, 3), a.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
  GenerationRequest hot = TextRequest({1}, 3);
  hot.sampling.temperature = -1;
  EXPECT_EQ(scheduler.Submit(hot, a.Callbacks()).status().code(),
            absl::StatusCode::kInvalidArgument);
  // 2 + 15 positions can never fit 4 blocks of 4.
  EXPECT_EQ(scheduler.Submit(TextRequest({1, 2}, 15), a.Callbacks()).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_FALSE(a.done.has_value());
}

TEST(SchedulerTest, ABadPromptFailsOnlyItself) {
  FakeRunner model;
  model.fail_prepare_token = 5;
  Scheduler scheduler(model, {});
  Outcome good, bad;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, 2}, 4), good.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, 5}, 4), bad.Callbacks()).ok());
  RunUntilIdle(scheduler);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.tokens(), Alone(TextRequest({1, 2}, 4)));
  EXPECT_EQ(bad.done->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(model.live, IsEmpty());
}

// A row the model fails on fails its own request; the others of its step are retried alone.
TEST(SchedulerTest, AFailingRowFailsOnlyItsRequest) {
  FakeRunner model;
  model.poison_token = 9;
  Scheduler scheduler(model, {});
  Outcome a, poisoned, c;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, 2}, 5), a.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(TextRequest({3, 9}, 5), poisoned.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(TextRequest({4}, 5), c.Callbacks()).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ(poisoned.done->status().code(), absl::StatusCode::kInternal);
  ASSERT_TRUE(a.ok() && c.ok());
  EXPECT_EQ(a.tokens(), Alone(TextRequest({1, 2}, 5)));
  EXPECT_EQ(c.tokens(), Alone(TextRequest({4}, 5)));
  EXPECT_GE(scheduler.stats().isolated_retries, 1);
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerTest, AFailedBatchIsRetriedRowByRow) {
  FakeRunner model;
  model.fail_step = 2;
  Scheduler scheduler(model, {});
  Outcome a, b;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 5), a.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(TextRequest({2}, 5), b.Callbacks()).ok());
  RunUntilIdle(scheduler);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a.tokens(), Alone(TextRequest({1}, 5)));
  EXPECT_EQ(b.tokens(), Alone(TextRequest({2}, 5)));
  EXPECT_EQ(scheduler.stats().isolated_retries, 1);
}

// A long prompt shares each step with the running streams: they get a token every step while it
// prefills in chunks of what the budget leaves.
TEST(SchedulerTest, ALongPromptNeverStallsRunningStreams) {
  FakeRunner model;
  Scheduler scheduler(model, {.step_token_budget = 8});
  Outcome a, b, long_prompt;
  ASSERT_TRUE(scheduler.Submit(TextRequest({1, 2}, 20), a.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(TextRequest({3}, 20), b.Callbacks()).ok());
  scheduler.Step();
  scheduler.Step();
  const GenerationRequest long_request = TextRequest(Range(5, 30), 4);
  ASSERT_TRUE(scheduler.Submit(long_request, long_prompt.Callbacks()).ok());
  const size_t before = a.streamed.size();
  for (int i = 0; i < 5; ++i) scheduler.Step();  // 30 tokens in chunks of 8 - 2 = 6
  EXPECT_EQ(a.streamed.size(), before + 5);
  EXPECT_EQ(long_prompt.streamed.size(), 1u);  // its first token came with its last chunk
  RunUntilIdle(scheduler);
  EXPECT_THAT(model.step_tokens, Each(Le(8)));
  EXPECT_EQ(scheduler.stats().max_decode_gap_steps, 1);
  EXPECT_EQ(long_prompt.tokens(), Alone(long_request));
  EXPECT_EQ(a.tokens(), Alone(TextRequest({1, 2}, 20)));
}

// With decode rows in the step, prompts get only the mixed budget; alone, the whole budget.
TEST(SchedulerTest, StepsWithDecodeRowsTakeTheMixedBudget) {
  FakeRunner model;
  Scheduler scheduler(model, {.step_token_budget = 16, .mixed_step_token_budget = 6});
  Outcome first, a, b;
  const GenerationRequest first_request = TextRequest(Range(1, 20), 8);
  ASSERT_TRUE(scheduler.Submit(first_request, first.Callbacks()).ok());
  scheduler.Step();  // nothing decodes yet: 16 of its 20 prompt tokens
  scheduler.Step();  // still prefilling: its last 4
  ASSERT_EQ(first.streamed.size(), 1u);
  const GenerationRequest a_request = TextRequest(Range(2, 7), 3);
  const GenerationRequest b_request = TextRequest(Range(3, 7), 3);
  ASSERT_TRUE(scheduler.Submit(a_request, a.Callbacks()).ok());
  ASSERT_TRUE(scheduler.Submit(b_request, b.Callbacks()).ok());
  scheduler.Step();  // one decode row and 5 of a's prompt tokens
  scheduler.Step();  // one decode row, a's last 2 and 3 of b's
  EXPECT_THAT(model.step_tokens, ElementsAre(16, 4, 6, 6));
  RunUntilIdle(scheduler);
  EXPECT_EQ(scheduler.stats().max_decode_gap_steps, 1);
  EXPECT_EQ(first.tokens(), Alone(first_request));
  EXPECT_EQ(a.tokens(), Alone(a_request));
  EXPECT_EQ(b.tokens(), Alone(b_request));
}

TEST(SchedulerTest, SeveralPromptsPrefillInOneStep) {
  FakeRunner model;
  Scheduler scheduler(model, {.step_token_budget = 16});
  Outcome o[4];
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(scheduler.Submit(TextRequest(Range(i, 5), 2), o[i].Callbacks()).ok());
  }
  scheduler.Step();
  // Three whole prompts and the first token of the fourth fill the 16 tokens.
  EXPECT_THAT(model.step_rows, ElementsAre(4));
  EXPECT_THAT(model.step_tokens, ElementsAre(16));
  RunUntilIdle(scheduler);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(o[i].tokens(), Alone(TextRequest(Range(i, 5), 2)));
}

// A cache too small for everyone at once: blocks are taken as sequences grow, the newest is
// preempted and recomputed, every request still gets exactly its own tokens, first tokens come
// in arrival order, and every block returns.
TEST(SchedulerTest, PreemptsTheNewestWhenTheCacheRunsOut) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/10);
  Scheduler scheduler(model, {});
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < 5; ++i) requests.push_back(TextRequest(Range(i, 3 + i), 14 - i));
  std::vector<Outcome> outcomes(requests.size());
  std::vector<int> first_token_order;
  for (size_t i = 0; i < requests.size(); ++i) {
    Scheduler::Callbacks callbacks = outcomes[i].Callbacks();
    callbacks.on_token = [&, i, inner = callbacks.on_token](const SampledToken& t) {
      if (outcomes[i].streamed.empty()) first_token_order.push_back(static_cast<int>(i));
      return inner(t);
    };
    ASSERT_TRUE(scheduler.Submit(requests[i], std::move(callbacks)).ok());
  }
  RunUntilIdle(scheduler);
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(outcomes[i].ok()) << i << ": " << outcomes[i].done->status();
    EXPECT_EQ(outcomes[i].tokens(), Alone(requests[i])) << i;
    EXPECT_EQ(outcomes[i].streamed, outcomes[i].tokens()) << i;
  }
  EXPECT_GT(scheduler.stats().preemptions, 0);
  EXPECT_THAT(first_token_order, ElementsAre(0, 1, 2, 3, 4));
  EXPECT_EQ(scheduler.stats().admissions_out_of_order, 0);
  EXPECT_EQ(model.num_used_blocks(), 0);
  EXPECT_THAT(model.live, IsEmpty());
}

// Waiting requests start in the order they came, however often the cache was short.
TEST(SchedulerTest, AdmissionKeepsArrivalOrder) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/4);
  Scheduler scheduler(model, {});
  std::vector<int> started;
  std::vector<Outcome> outcomes(6);
  for (int i = 0; i < 6; ++i) {
    Scheduler::Callbacks callbacks = outcomes[i].Callbacks();
    callbacks.on_token = [&, i, inner = callbacks.on_token](const SampledToken& t) {
      if (outcomes[i].streamed.empty()) started.push_back(i);
      return inner(t);
    };
    ASSERT_TRUE(scheduler.Submit(TextRequest(Range(i, 8), 8), std::move(callbacks)).ok());
  }
  RunUntilIdle(scheduler);
  EXPECT_THAT(started, ElementsAre(0, 1, 2, 3, 4, 5));
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerTest, PrefixCacheSharesFullBlocksAcrossRequestsAndTurns) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/64);
  Scheduler scheduler(model, {});
  const GenerationRequest first = TextRequest(Range(1, 10), 6);
  Outcome a;
  ASSERT_TRUE(scheduler.Submit(first, a.Callbacks()).ok());
  RunUntilIdle(scheduler);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(scheduler.stats().cached_prompt_tokens, 0);

  // Same first 8 tokens: two full blocks come from the cache.
  std::vector<int32_t> shared = Range(1, 8);
  shared.insert(shared.end(), {0, 0, 0});
  Outcome b;
  ASSERT_TRUE(scheduler.Submit(TextRequest(shared, 3), b.Callbacks()).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ(scheduler.stats().cached_prompt_tokens, 8);
  EXPECT_EQ(model.prepared_from.back(), 8);
  EXPECT_EQ(b.tokens(), Alone(TextRequest(shared, 3)));

  // The next turn: the first prompt, its answer, more. The answer's blocks were published as
  // they filled: 10 + 5 fed-back tokens make 3 full blocks.
  std::vector<int32_t> turn = first.prompt.tokens;
  turn.insert(turn.end(), a.tokens().begin(), a.tokens().end());
  turn.insert(turn.end(), {3, 4});
  Outcome c;
  ASSERT_TRUE(scheduler.Submit(TextRequest(turn, 4), c.Callbacks()).ok());
  RunUntilIdle(scheduler);
  EXPECT_EQ(scheduler.stats().cached_prompt_tokens, 8 + 12);
  EXPECT_EQ(c.tokens(), Alone(TextRequest(turn, 4)));
  EXPECT_EQ(model.num_used_blocks(), 0);
  EXPECT_GT(model.cache().num_cached_blocks(), 0);
}

TEST(SchedulerTest, PrefixCacheOffComputesEverything) {
  FakeRunner model;
  Scheduler scheduler(model, {.prefix_cache = false});
  for (int i = 0; i < 2; ++i) {
    Outcome o;
    ASSERT_TRUE(scheduler.Submit(TextRequest(Range(1, 12), 2), o.Callbacks()).ok());
    RunUntilIdle(scheduler);
  }
  EXPECT_EQ(scheduler.stats().cached_prompt_tokens, 0);
  EXPECT_EQ(model.cache().num_cached_blocks(), 0);
}

TEST(SchedulerTest, ImageRowsKeyTheCacheByTheirContent) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/64);
  Scheduler scheduler(model, {});
  auto image_request = [](float value) {
    GenerationRequest r = TextRequest(
        {1, kFakeImageToken, kFakeImageToken, kFakeImageToken, kFakeImageToken, 2, 3, 4, 5}, 2);
    r.prompt.image_features.assign(4 * 2, value);  // 4 rows of width 2
    return r;
  };
  for (float value : {1.0f, 2.0f, 2.0f}) {
    Outcome o;
    ASSERT_TRUE(scheduler.Submit(image_request(value), o.Callbacks()).ok());
    RunUntilIdle(scheduler);
    ASSERT_TRUE(o.ok());
  }
  // Only the third (same features as the second) hits: its first 8 positions.
  EXPECT_EQ(scheduler.stats().cached_prompt_tokens, 8);
}

TEST(SchedulerTest, CachedBlocksAreEvictedWhenTheCacheIsShort) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/8);
  Scheduler scheduler(model, {});
  for (int first : {1, 7}) {
    Outcome o;
    ASSERT_TRUE(scheduler.Submit(TextRequest(Range(first, 24), 4), o.Callbacks()).ok());
    RunUntilIdle(scheduler);
    ASSERT_TRUE(o.ok()) << o.done->status();
    EXPECT_EQ(o.tokens(), Alone(TextRequest(Range(first, 24), 4)));
  }
  EXPECT_GT(model.cache().num_evictions(), 0);
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerTest, BatchSizeIsCapped) {
  FakeRunner model;
  Scheduler scheduler(model, {.max_batch_size = 2});
  Outcome outcomes[5];
  for (Outcome& o : outcomes)
    ASSERT_TRUE(scheduler.Submit(TextRequest({1}, 3), o.Callbacks()).ok());
  RunUntilIdle(scheduler);
  for (Outcome& o : outcomes) EXPECT_TRUE(o.ok());
  EXPECT_THAT(model.step_rows, Each(Le(2)));
}

TEST(SchedulerTest, ThreadServesConcurrentSubmittersWithTheirOwnTokens) {
  FakeRunner model(/*block_size=*/4, /*num_blocks=*/24);  // short: preemptions happen
  Scheduler scheduler(model, {.max_batch_size = 8, .step_token_budget = 6});
  scheduler.Start();
  constexpr int kClients = 32;
  std::vector<GenerationRequest> requests;
  for (int i = 0; i < kClients; ++i) {
    requests.push_back(TextRequest(Range(i, 1 + i % 9), 3 + i % 5));
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
    ASSERT_TRUE(outcomes[i].ok()) << i;
    EXPECT_THAT(outcomes[i].tokens(), ElementsAreArray(Alone(requests[i]))) << i;
  }
  EXPECT_THAT(model.live, IsEmpty());
  EXPECT_EQ(model.num_used_blocks(), 0);
}

TEST(SchedulerTest, StopCancelsWhatIsLeft) {
  FakeRunner model;
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
  EXPECT_EQ(model.num_used_blocks(), 0);
}

}  // namespace
}  // namespace pixtral
