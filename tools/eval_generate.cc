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
constexpr int64_t kTekkenEosId = 2;

absl::StatusOr<GenerationRequest> RequestFromArgs(const EvalArgs& args) {
  GenerationRequest request;
  absl::StatusOr<int64_t> max_tokens = args.GetInt("max-tokens", 0);
  if (!max_tokens.ok()) return max_tokens.status();
  if (*max_tokens < 0 || *max_tokens > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError("--max-tokens must be a non-negative int");
  }
  request.max_tokens = static_cast<int>(*max_tokens);
  absl::StatusOr<double> temperature = args.GetDouble("temperature", 0.0);
  if (!temperature.ok()) return temperature.status();
  absl::StatusOr<double> top_p = args.GetDouble("top-p", 1.0);
  if (!top_p.ok()) return top_p.status();
  absl::StatusOr<int64_t> seed = args.GetInt("seed", 0);
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
  auto usage_error = [](const absl::Status& status) {
    std::cerr << "pixtral_eval generate: " << status.message() << "\n";
    return 2;
  };
  absl::StatusOr<EvalArgs> args = EvalArgs::Parse(
      argv, {"model", "inputs", "max-tokens", "temperature", "top-p", "seed", "eos-id", "backend"},
      {"ignore-eos"});
  if (!args.ok()) return usage_error(args.status());
  if (absl::Status s = args->Require({"model", "inputs", "max-tokens"}); !s.ok()) {
    return usage_error(s);
  }
  absl::StatusOr<GenerationRequest> request = RequestFromArgs(*args);
  if (!request.ok()) return usage_error(request.status());
  absl::StatusOr<int64_t> eos_id = args->GetInt("eos-id", kTekkenEosId);
  if (!eos_id.ok()) return usage_error(eos_id.status());
  auto fail = [](const absl::Status& status) {
    std::cerr << "pixtral_eval generate: " << status << "\n";
    return 1;
  };

  if (args->Get("backend", "cpu") != "cpu") {
    return usage_error(absl::InvalidArgumentError("--backend: only cpu is built in"));
  }

  absl::StatusOr<Prompt> prompt = LoadEvalInputs(args->Get("inputs"));
  if (!prompt.ok()) return fail(prompt.status());
  request->prompt = *std::move(prompt);
  CacheOptions cache;  // one sequence: the prompt and its whole continuation
  const int64_t blocks = (static_cast<int64_t>(request->prompt.tokens.size()) +
                          request->max_tokens + cache.block_size - 1) /
                         cache.block_size;
  if (blocks > std::numeric_limits<int>::max()) {
    return fail(absl::InvalidArgumentError("prompt plus --max-tokens is too long"));
  }
  cache.num_blocks = static_cast<int>(blocks);
  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  absl::StatusOr<std::unique_ptr<PixtralModel>> model =
      PixtralModel::Load(args->Get("model"), backend.get(), cache);
  if (!model.ok()) return fail(model.status());

  PixtralSequenceModel sequences(**model);
  absl::StatusOr<std::vector<Completion>> completions =
      Generate(sequences, {*request}, {.eos_id = static_cast<int32_t>(*eos_id)});
  if (!completions.ok()) return fail(completions.status());
  std::cout << nlohmann::json{{"ids", (*completions)[0].tokens}}.dump() << "\n";
  return 0;
}

}  // namespace pixtral
