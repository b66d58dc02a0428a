// One request on a shared Scheduler, driven from the caller's own thread.
//
// The scheduler thread only queues each sampled token; this call hands them to `on_tokens` on
// the calling thread, so a slow consumer (a network write) never stalls the batch. It returns
// once the request has ended, which makes it safe to keep per-call state on the caller's stack.
//
//   absl::StatusOr<Completion> completion = RunOnScheduler(
//       scheduler, std::move(request),
//       [&](absl::Span<const SampledToken> tokens) { return stream->Write(...); },
//       [&] { return context->IsCancelled(); });
#ifndef PIXTRAL_ENGINE_RUN_ON_SCHEDULER_H_
#define PIXTRAL_ENGINE_RUN_ON_SCHEDULER_H_

#include <functional>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/request.h"
#include "engine/scheduler.h"

namespace pixtral {

// Submits `request` and streams its tokens to `on_tokens` (several at once when they pile up).
// The request is cancelled when `on_tokens` returns false or `cancelled` (polled every few
// milliseconds; may be empty) returns true; it then ends with FinishReason::kCancelled. Submit
// errors (invalid request, full queue) are returned as they are.
absl::StatusOr<Completion> RunOnScheduler(
    Scheduler& scheduler, GenerationRequest request,
    const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
    const std::function<bool()>& cancelled);

// Scheduler::PinPrefix, waiting (one step at most) for the pin, and which images of the keyed
// `prompt` the pinned prefix does not cover: the features the request must bring.
struct PinnedPrefix {
  Scheduler::PrefixPin pin;
  int first_needed_image = 0;
};
absl::StatusOr<PinnedPrefix> PinPrefixAndWait(Scheduler& scheduler, const Prompt& prompt,
                                              int image_token);

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_RUN_ON_SCHEDULER_H_
