#include "decoder/generate.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "engine/scheduler.h"

namespace pixtral {

absl::StatusOr<std::vector<Completion>> Generate(ModelRunner& model,
                                                 absl::Span<const GenerationRequest> requests,
                                                 const GenerateOptions& options) {
  const int n = static_cast<int>(requests.size());
  // Declared before the scheduler, whose destructor reports the requests it drops into it.
  std::vector<std::optional<absl::StatusOr<Completion>>> results(n);
  // Everything in one batch: the prompts' chunks, then batched decode steps.
  Scheduler scheduler(model, {.eos_id = options.eos_id,
                              .max_batch_size = std::max(n, 1),
                              .max_waiting = std::max(n, 1),
                              .step_token_budget = std::max(options.step_token_budget, 1)});
  for (int i = 0; i < n; ++i) {
    Scheduler::Callbacks callbacks;
    if (options.on_token) {
      callbacks.on_token = [&options, i](const SampledToken& token) {
        return options.on_token(i, token);
      };
    }
    callbacks.on_done = [&results, i](absl::StatusOr<Completion> result) {
      results[i] = std::move(result);
    };
    // A bad request fails the call before the model runs; the scheduler's destructor drops the
    // requests already queued.
    absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(requests[i], std::move(callbacks));
    if (!ticket.ok()) {
      return absl::Status(ticket.status().code(),
                          absl::StrCat("request ", i, ": ", ticket.status().message()));
    }
  }
  while (scheduler.HasWork()) scheduler.Step();

  std::vector<Completion> completions;
  completions.reserve(n);
  for (std::optional<absl::StatusOr<Completion>>& result : results) {
    if (!result.has_value()) return absl::InternalError("a request never finished");
    if (!result->ok()) return result->status();
    completions.push_back(**std::move(result));
  }
  return completions;
}

}  // namespace pixtral
