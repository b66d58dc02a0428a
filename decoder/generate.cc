#include "decoder/generate.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace pixtral {
namespace {

absl::Status ValidateRequest(const GenerationRequest& request, int index) {
  if (request.max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("request ", index, ": max_tokens must be >= 0, got ", request.max_tokens));
  }
  if (request.prompt.tokens.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("request ", index, ": empty prompt"));
  }
  if (static_cast<int64_t>(request.prompt.tokens.size()) + request.max_tokens >
      std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("request ", index, ": too long"));
  }
  if (absl::Status s = ValidateSamplingParams(request.sampling); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("request ", index, ": ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<Completion>> Generate(SequenceModel& model,
                                                 absl::Span<const GenerationRequest> requests,
                                                 const GenerateOptions& options) {
  std::vector<Sampler> samplers;
  samplers.reserve(requests.size());
  std::vector<const Prompt*> prompts;
  std::vector<int> capacities;
  std::vector<int> prefilled;  // request index of each prompt sent to Prefill
  for (int i = 0; i < static_cast<int>(requests.size()); ++i) {
    const GenerationRequest& request = requests[i];
    if (absl::Status s = ValidateRequest(request, i); !s.ok()) return s;
    samplers.push_back(*Sampler::Create(request.sampling));
    if (request.max_tokens == 0) continue;
    prompts.push_back(&request.prompt);
    capacities.push_back(static_cast<int>(request.prompt.tokens.size()) + request.max_tokens);
    prefilled.push_back(i);
  }
  std::vector<Completion> completions(requests.size());
  if (prompts.empty()) return completions;

  absl::StatusOr<SequenceModel::PrefillResult> prefill = model.Prefill(prompts, capacities);
  if (!prefill.ok()) return prefill.status();
  if (prefill->ids.size() != prompts.size()) {
    for (SequenceModel::SequenceId id : prefill->ids) model.Release(id);
    return absl::InternalError("model prefilled a different number of sequences");
  }

  // The sequences still holding cache; released on every way out of this function.
  absl::flat_hash_set<SequenceModel::SequenceId> held(prefill->ids.begin(), prefill->ids.end());
  absl::Cleanup release_held = [&model, &held] {
    for (SequenceModel::SequenceId id : held) model.Release(id);
  };
  auto finish = [&](int request, SequenceModel::SequenceId id, FinishReason reason) {
    completions[request].finish_reason = reason;
    model.Release(id);
    held.erase(id);
  };

  struct Active {
    int request;
    SequenceModel::SequenceId id;
  };
  std::vector<Active> active;
  for (size_t k = 0; k < prefilled.size(); ++k) active.push_back({prefilled[k], prefill->ids[k]});
  std::vector<float> logits = std::move(prefill->logits);
  const size_t vocab = static_cast<size_t>(model.vocab_size());
  auto check_rows = [&](const std::vector<float>& rows, size_t n) -> absl::Status {
    if (rows.size() == n * vocab) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("model returned ", rows.size(), " logits for ", n,
                                            " sequences of vocabulary ", vocab));
  };
  if (absl::Status s = check_rows(logits, active.size()); !s.ok()) return s;

  while (!active.empty()) {
    std::vector<Active> next;
    std::vector<SequenceModel::SequenceId> next_ids;
    std::vector<int32_t> next_tokens;
    for (size_t k = 0; k < active.size(); ++k) {
      const Active& a = active[k];
      const GenerationRequest& request = requests[a.request];
      Completion& completion = completions[a.request];
      absl::StatusOr<SampledToken> token =
          samplers[a.request].Sample(absl::MakeConstSpan(logits.data() + k * vocab, vocab));
      if (!token.ok()) return token.status();

      if (!request.ignore_eos && options.eos_id >= 0 && token->id == options.eos_id) {
        finish(a.request, a.id, FinishReason::kEos);
        continue;
      }
      if (std::find(request.stop_token_ids.begin(), request.stop_token_ids.end(), token->id) !=
          request.stop_token_ids.end()) {
        finish(a.request, a.id, FinishReason::kStopToken);
        continue;
      }
      completion.tokens.push_back(token->id);
      if (request.logprobs) completion.logprobs.push_back(token->logprob);
      if (options.on_token && !options.on_token(a.request, *token)) {
        finish(a.request, a.id, FinishReason::kCancelled);
      } else if (static_cast<int>(completion.tokens.size()) == request.max_tokens) {
        finish(a.request, a.id, FinishReason::kLength);
      } else {
        next.push_back(a);
        next_ids.push_back(a.id);
        next_tokens.push_back(token->id);
      }
    }
    active = std::move(next);
    if (active.empty()) break;
    absl::StatusOr<std::vector<float>> step = model.Decode(next_ids, next_tokens);
    if (!step.ok()) return step.status();
    if (absl::Status s = check_rows(*step, active.size()); !s.ok()) return s;
    logits = *std::move(step);
  }
  return completions;
}

}  // namespace pixtral
