// The embedded mode's decoder: requests go straight to an in-process continuous-batching
// Scheduler, no network hop.
#ifndef PIXTRAL_SERVICES_GATEWAY_EMBEDDED_DECODER_STAGE_H_
#define PIXTRAL_SERVICES_GATEWAY_EMBEDDED_DECODER_STAGE_H_

#include "engine/run_on_scheduler.h"
#include "engine/scheduler.h"
#include "services/gateway/stages.h"

namespace pixtral {

class EmbeddedDecoderStage final : public DecoderStage {
 public:
  // `scheduler` must be running (Start()) and outlive this stage.
  explicit EmbeddedDecoderStage(Scheduler& scheduler) : scheduler_(scheduler) {}

  absl::StatusOr<Completion> Generate(
      GenerationRequest request,
      const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
      const CallContext& context) override {
    return RunOnScheduler(scheduler_, std::move(request), on_tokens, [&context] {
      return absl::Now() > context.deadline || (context.cancelled && context.cancelled());
    });
  }

 private:
  Scheduler& scheduler_;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_EMBEDDED_DECODER_STAGE_H_
