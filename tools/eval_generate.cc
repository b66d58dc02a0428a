// pixtral_eval generate: the continuation of one prompt, printed as {"ids": [...]}.

#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "decoder/generate.h"
#include "decoder/pixtral_model.h"
#include "decoder/pixtral_sequence_model.h"
#include "kernels/cpu/cpu_backend.h"
#include "nlohmann/json.hpp"
#include "tools/eval_args.h"
#include "tools/eval_commands.h"
#include "tools/eval_inputs.h"

namespace pixtral {
namespace {

// tekken's </s>.
constexpr int32_t kTekkenEosId = 2;

absl::StatusOr<GenerationRequest> RequestFromArgs(const EvalArgs& args) {
  GenerationRequest request;
  absl::StatusOr<int> max_tokens = args.GetInt("max-tokens", 0);
  if (!max_tokens.ok()) return max_tokens.status();
  if (*max_tokens < 0) return absl::InvalidArgumentError("--max-tokens must be non-negative");
  request.max_tokens = *max_tokens;
  absl::StatusOr<double> temperature = args.GetDouble("temperature", 0.0);
  if (!temperature.ok()) return temperature.status();
  absl::StatusOr<double> top_p = args.GetDouble("top-p", 1.0);
  if (!top_p.ok()) return top_p.status();
  absl::StatusOr<int64_t> seed = args.GetInt<int64_t>("seed", 0);
  if (!seed.ok()) return seed.status();
  request.sampling = {.temperature = static_cast<float>(*temperature),
                      .top_p = static_cast<float>(*top_p),
                      .seed = static_cast<uint64_t>(*seed)};
  if (absl::Status s = ValidateSamplingParams(request.sampling); !s.ok()) return s;
  request.ignore_eos = args.Has("ignore-eos");
  return request;
}

}  // namespace

int RunGenerate(const std::vector<std::string>& argv) {
  constexpr char kCommand[] = "generate";
  absl::StatusOr<EvalArgs> args = EvalArgs::Parse(
      argv, {"model", "inputs", "max-tokens", "temperature", "top-p", "seed", "eos-id", "backend"},
      {"ignore-eos"});
  if (!args.ok()) return ReportUsageError(kCommand, args.status());
  if (absl::Status s = args->Require({"model", "inputs", "max-tokens"}); !s.ok()) {
    return ReportUsageError(kCommand, s);
  }
  absl::StatusOr<GenerationRequest> request = RequestFromArgs(*args);
  if (!request.ok()) return ReportUsageError(kCommand, request.status());
  absl::StatusOr<int32_t> eos_id = args->GetInt("eos-id", kTekkenEosId);
  if (!eos_id.ok()) return ReportUsageError(kCommand, eos_id.status());
  if (args->Get("backend", "cpu") != "cpu") {
    return ReportUsageError(kCommand,
                            absl::InvalidArgumentError("--backend: only cpu is built in"));
  }

  absl::StatusOr<Prompt> prompt = LoadEvalInputs(args->Get("inputs"));
  if (!prompt.ok()) return ReportFailure(kCommand, prompt.status());
  request->prompt = *std::move(prompt);
  CacheOptions cache;  // one sequence: the prompt and its whole continuation
  const int64_t blocks = (static_cast<int64_t>(request->prompt.tokens.size()) +
                          request->max_tokens + cache.block_size - 1) /
                         cache.block_size;
  if (blocks > std::numeric_limits<int>::max()) {
    return ReportFailure(kCommand,
                         absl::InvalidArgumentError("prompt plus --max-tokens is too long"));
  }
  cache.num_blocks = static_cast<int>(blocks);
  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  absl::StatusOr<std::unique_ptr<PixtralModel>> model =
      PixtralModel::Load(args->Get("model"), backend.get(), cache);
  if (!model.ok()) return ReportFailure(kCommand, model.status());

  PixtralSequenceModel sequences(**model);
  absl::StatusOr<std::vector<Completion>> completions =
      Generate(sequences, {*request}, {.eos_id = *eos_id});
  if (!completions.ok()) return ReportFailure(kCommand, completions.status());
  std::cout << nlohmann::json{{"ids", (*completions)[0].tokens}}.dump() << "\n";
  return 0;
}

}  // namespace pixtral
