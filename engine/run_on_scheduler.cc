#include "engine/run_on_scheduler.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "engine/image_keys.h"

namespace pixtral {
namespace {

// How often a waiting call checks `cancelled` while no token arrives.
constexpr std::chrono::milliseconds kCancelPollInterval(20);

// What the scheduler thread reports for one call, handed over to the call's thread.
class CallEvents {
 public:
  bool OnToken(const SampledToken& token) {
    std::lock_guard<std::mutex> lock(mutex_);
    tokens_.push_back(token);
    ready_.notify_one();
    return true;
  }

  void OnDone(absl::StatusOr<Completion> result) {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = std::move(result);
    ready_.notify_one();
  }

  // Waits up to the poll interval for news; moves out the tokens so far and, once the request
  // has ended, its result.
  void Take(std::vector<SampledToken>* tokens, std::optional<absl::StatusOr<Completion>>* done) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait_for(lock, kCancelPollInterval,
                    [this] { return !tokens_.empty() || done_.has_value(); });
    tokens->swap(tokens_);
    tokens_.clear();
    if (done_.has_value()) *done = std::move(done_);
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<SampledToken> tokens_;
  std::optional<absl::StatusOr<Completion>> done_;
};

}  // namespace

absl::StatusOr<Completion> RunOnScheduler(
    Scheduler& scheduler, GenerationRequest request,
    const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
    const std::function<bool()>& cancelled) {
  CallEvents events;
  absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(
      std::move(request),
      {.on_token = [&events](const SampledToken& t) { return events.OnToken(t); },
       .on_done = [&events](absl::StatusOr<Completion> c) { events.OnDone(std::move(c)); }});
  if (!ticket.ok()) return ticket.status();

  // `events` lives on this stack, so every way out waits for on_done; giving up only cancels.
  bool cancel_sent = false;
  std::optional<absl::StatusOr<Completion>> done;
  std::vector<SampledToken> tokens;
  while (!done.has_value()) {
    events.Take(&tokens, &done);
    if (cancel_sent) continue;
    const bool keep_going = (tokens.empty() || on_tokens(tokens)) && !(cancelled && cancelled());
    if (!keep_going) {
      cancel_sent = true;
      scheduler.Cancel(*ticket);
    }
  }
  if (done->ok() && cancel_sent) (*done)->finish_reason = FinishReason::kCancelled;
  return *std::move(done);
}

absl::StatusOr<PinnedPrefix> PinPrefixAndWait(Scheduler& scheduler, const Prompt& prompt,
                                              int image_token) {
  absl::Notification pinned;
  absl::StatusOr<Scheduler::PrefixPin> pin;
  absl::Status asked = scheduler.PinPrefix(prompt, [&](absl::StatusOr<Scheduler::PrefixPin> p) {
    pin = std::move(p);
    pinned.Notify();
  });
  if (!asked.ok()) return asked;
  pinned.WaitForNotification();  // `done` is called exactly once, by a step or by Stop()
  if (!pin.ok()) return pin.status();
  return PinnedPrefix{.pin = *pin,
                      .first_needed_image = FirstNeededImage(prompt, pin->positions, image_token)};
}

}  // namespace pixtral
