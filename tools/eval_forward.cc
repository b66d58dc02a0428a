// pixtral_eval forward: logits at every position of a prompt (and the adapted image features),
// written to a safetensors file.

#include <memory>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "decoder/pixtral_model.h"
#include "decoder/pixtral_sequence_model.h"
#include "kernels/cpu/cpu_backend.h"
#include "tools/eval_args.h"
#include "tools/eval_commands.h"
#include "tools/eval_inputs.h"

namespace pixtral {

int RunForward(const std::vector<std::string>& argv) {
  constexpr char kCommand[] = "forward";
  absl::StatusOr<EvalArgs> args = EvalArgs::Parse(argv, {"model", "inputs", "out", "backend"}, {});
  if (!args.ok()) return ReportUsageError(kCommand, args.status());
  if (absl::Status s = args->Require({"model", "inputs", "out"}); !s.ok()) {
    return ReportUsageError(kCommand, s);
  }
  if (args->Get("backend", "cpu") != "cpu") {
    return ReportUsageError(kCommand,
                            absl::InvalidArgumentError("--backend: only cpu is built in"));
  }

  absl::StatusOr<Prompt> prompt = LoadEvalInputs(args->Get("inputs"));
  if (!prompt.ok()) return ReportFailure(kCommand, prompt.status());
  const int64_t tokens = static_cast<int64_t>(prompt->tokens.size());
  std::unique_ptr<kernels::Backend> backend = kernels::NewCpuBackend();
  CacheOptions cache;  // one sequence of exactly this prompt
  cache.num_blocks = static_cast<int>((tokens + cache.block_size - 1) / cache.block_size);
  absl::StatusOr<std::unique_ptr<PixtralModel>> model =
      PixtralModel::Load(args->Get("model"), backend.get(), cache);
  if (!model.ok()) return ReportFailure(kCommand, model.status());

  const std::vector<Image> images = ImageViews(*prompt);
  const SequenceId sequence = (*model)->decoder().AddSequence();
  absl::StatusOr<std::vector<float>> logits =
      (*model)->Prefill(sequence, prompt->tokens, images, {.all_logits = true});
  (*model)->decoder().Release(sequence);
  if (!logits.ok()) return ReportFailure(kCommand, logits.status());
  std::vector<TensorToWrite> out = {
      {{"logits", DType::kF32, {tokens, (*model)->config().decoder.vocab_size}}, AsBytes(*logits)}};

  std::vector<float> image_features;
  if (!images.empty()) {
    // Encoded a second time: Prefill keeps its features to itself.
    absl::StatusOr<kernels::Tensor> features = (*model)->EmbedImages(prompt->tokens, images);
    if (!features.ok()) return ReportFailure(kCommand, features.status());
    image_features = kernels::ToHost(*backend, *features);
    out.push_back({{"image_features", DType::kF32, features->shape()}, AsBytes(image_features)});
  }
  if (absl::Status s = WriteSafetensors(args->Get("out"), out); !s.ok()) {
    return ReportFailure(kCommand, s);
  }
  return 0;
}

}  // namespace pixtral
