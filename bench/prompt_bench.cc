// The image prompt's three latencies on a backend, each the median of repeats after warm-up:
//   vision:  PixtralModel::EmbedImages of one image (pixel upload, encoder, adapter);
//   prefill: one Decoder::Forward over the whole prompt with those features (last logits back);
//   ttft:    time to first token, PixtralModel::Prefill with the image plus a greedy Sampler pick.
// The prompt is the [IMG] layout of one --image_size square image (rows of [IMG] ending in
// [IMG_BREAK], the last in [IMG_END]) between [INST] and [/INST] with text tokens, padded to
// --prompt_tokens. Pixels are random normals (as normalized pixels are), tokens arbitrary ids. For
// the Pixtral-12B shapes, write a random folder first:
//
//   make_random_model --out /tmp/pixtral-12b --preset pixtral-12b
//   prompt_bench --model /tmp/pixtral-12b --backend cuda
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "bench/bench_model.h"
#include "decoder/pixtral_model.h"
#include "decoder/sampler.h"

ABSL_FLAG(std::string, model, "", "Model folder with a vision encoder.");
ABSL_FLAG(std::string, backend, "cuda", "cpu | cuda.");
ABSL_FLAG(int, image_size, 1024, "Side of the square image, in pixels.");
ABSL_FLAG(int, prompt_tokens, 4213, "Prompt length, image tokens included.");
ABSL_FLAG(int, warmup, 1, "Untimed runs of each measurement first.");
ABSL_FLAG(int, repeats, 5, "Timed runs of each measurement.");

namespace pixtral {
namespace {

// Runs `run` warmup + repeats times and prints the median, min and max of the timed runs.
absl::Status Measure(const char* what, int warmup, int repeats,
                     const std::function<absl::Status()>& run) {
  std::vector<double> times;
  for (int i = 0; i < warmup + repeats; ++i) {
    const Clock::time_point start = Clock::now();
    if (absl::Status status = run(); !status.ok()) return status;
    if (i >= warmup) times.push_back(MsSince(start));
  }
  std::sort(times.begin(), times.end());
  std::printf("%s: median %.2f ms, min %.2f, max %.2f over %d runs\n", what,
              times[times.size() / 2], times.front(), times.back(), repeats);
  std::fflush(stdout);
  return absl::OkStatus();
}

int Main() {
  const int side = absl::GetFlag(FLAGS_image_size), length = absl::GetFlag(FLAGS_prompt_tokens);
  const int warmup = absl::GetFlag(FLAGS_warmup), repeats = absl::GetFlag(FLAGS_repeats);
  if (side < 1 || warmup < 0 || repeats < 1) {
    std::fprintf(stderr, "prompt_bench: --image_size and --repeats must be positive\n");
    return 2;
  }
  const CacheOptions cache{.block_size = 16, .num_blocks = (length + 15) / 16};
  absl::StatusOr<BenchModel> loaded =
      LoadBenchModel(absl::GetFlag(FLAGS_backend), absl::GetFlag(FLAGS_model), cache);
  if (!loaded.ok()) {
    std::fprintf(stderr, "prompt_bench: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  PixtralModel* model = loaded->model.get();
  kernels::Backend* backend = loaded->backend.get();
  if (!model->config().vision.has_value()) {
    std::fprintf(stderr, "prompt_bench: the model has no vision encoder\n");
    return 1;
  }
  const VisionEncoderConfig& vision = *model->config().vision;
  const int vocab = model->config().decoder.vocab_size;

  const int grid = side / vision.patch_size;
  std::vector<int32_t> tokens = {1, 3};  // <s> [INST]
  for (int r = 0; r < grid; ++r) {
    tokens.insert(tokens.end(), grid, vision.image_token_id);
    tokens.push_back(r + 1 < grid ? vision.image_break_token_id : vision.image_end_token_id);
  }
  if (std::ssize(tokens) + 1 > length) {
    std::fprintf(stderr, "prompt_bench: the image alone needs more than %d tokens\n", length);
    return 2;
  }
  for (int i = 0; std::ssize(tokens) + 1 < length; ++i) tokens.push_back(1000 + 37 * i % 20000);
  tokens.push_back(4);  // [/INST]
  std::vector<float> pixels(int64_t{vision.num_channels} * side * side);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (float& p : pixels) p = normal(rng);
  const Image image{.height = side, .width = side, .pixels = pixels};
  std::printf("prompt: %zu tokens, %d [IMG] (%dx%d image)\n", tokens.size(), grid * grid, side,
              side);

  PixtralModel& m = *model;
  Decoder& decoder = m.decoder();
  kernels::Tensor features;
  absl::Status status = Measure("vision (encoder + adapter)", warmup, repeats, [&] {
    auto adapted = m.EmbedImages(tokens, {&image, 1});
    if (!adapted.ok()) return adapted.status();
    features = *std::move(adapted);
    // Reading the last row back waits for the queued work.
    const kernels::Tensor last = features.Rows(features.shape()[0] - 1, 1);
    std::vector<float> row(last.shape()[1]);
    backend->CopyToHost(last, row.data());
    return absl::OkStatus();
  });
  if (status.ok()) {
    status = Measure("prefill (decoder only)", warmup, repeats, [&] {
      const SequenceId seq = decoder.AddSequence();
      auto logits =
          decoder.Forward({{.sequence = seq, .tokens = tokens, .image_features = features}});
      decoder.Release(seq);
      return logits.status();
    });
  }
  if (status.ok()) {
    status = Measure("time to first token (Prefill with the image + greedy pick)", warmup, repeats,
                     [&]() -> absl::Status {
                       absl::StatusOr<Sampler> sampler = Sampler::Create({});
                       if (!sampler.ok()) return sampler.status();
                       const SequenceId seq = decoder.AddSequence();
                       auto logits = m.Prefill(seq, tokens, {&image, 1});
                       absl::StatusOr<SampledToken> first =
                           logits.ok() ? sampler->Sample(*logits) : logits.status();
                       decoder.Release(seq);
                       if (first.ok() && (first->id < 0 || first->id >= vocab)) {
                         return absl::InternalError("sampled token outside the vocabulary");
                       }
                       return first.status();
                     });
  }
  if (!status.ok()) {
    std::fprintf(stderr, "prompt_bench: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return pixtral::Main();
}
