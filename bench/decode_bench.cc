// Decode speed of a model folder on a backend: milliseconds per step of `--batch` sequences that
// decode together through one Decoder::Forward per step (each step ends by reading its logits
// back, so host clocks around a step time the whole step), and tokens per second. For the
// Pixtral-12B shapes, write a random folder first:
//
//   make_random_model --out /tmp/pixtral-12b --preset pixtral-12b --vision=false
//   decode_bench --model /tmp/pixtral-12b --backend cuda --batch 16
#include <cuda_profiler_api.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/bench_model.h"
#include "decoder/pixtral_model.h"
#include "decoder/sampler.h"

ABSL_FLAG(std::string, model, "", "Model folder (params.json + consolidated.safetensors).");
ABSL_FLAG(std::string, backend, "cuda", "cpu | cuda.");
ABSL_FLAG(int, batch, 1, "Sequences decoding together.");
ABSL_FLAG(int, tp, 1, "Tensor-parallel ranks of the decoder (cuda: GPUs 0..tp-1, NCCL).");
ABSL_FLAG(int, prompt_tokens, 16, "Prompt length of each sequence before decoding.");
ABSL_FLAG(int, warmup_steps, 8, "Decode steps run before timing.");
ABSL_FLAG(int, steps, 64, "Timed decode steps.");
ABSL_FLAG(float, temperature, 0.0f, "Sampling temperature of every sequence (0: greedy).");
ABSL_FLAG(float, top_p, 1.0f, "Nucleus of every sequence's sampling.");
ABSL_FLAG(bool, auto_cache, false,
          "Size the KV cache from the device memory left after the weights (CacheOptions "
          "num_blocks 0) and print its capacity, instead of just what the run needs.");
ABSL_FLAG(bool, compare_graphs, false,
          "Then decode again with the same kernels launched one by one (no CUDA graphs) and "
          "compare every sequence's tokens; fails on a difference.");
ABSL_FLAG(int, profile_step, -1,
          "Step (counting warm-up) bracketed by cudaProfilerStart/Stop, for "
          "`ncu --profile-from-start off`; -1: none.");

namespace pixtral {
namespace {

// One run: each sequence gets its own prompt, prefilled on its own; then all decode together,
// each feeding back its own pick, `steps` times.
struct DecodeRun {
  std::vector<double> step_ms;
  std::vector<std::vector<int32_t>> tokens;  // [step][sequence]
};

// The timed steps' times, sorted.
std::vector<double> TimedSteps(const DecodeRun& run, int warmup) {
  std::vector<double> times(run.step_ms.begin() + warmup, run.step_ms.end());
  std::sort(times.begin(), times.end());
  return times;
}

absl::StatusOr<DecodeRun> RunDecode(PixtralModel& model, int batch, int prompt_tokens, int steps) {
  Decoder& decoder = model.decoder();
  const DecoderConfig& config = model.config().decoder;
  std::vector<SequenceId> seqs(batch);
  std::vector<int32_t> next(batch);
  std::vector<int32_t> prompt(prompt_tokens);
  Clock::time_point start = Clock::now();
  for (int b = 0; b < batch; ++b) {
    seqs[b] = decoder.AddSequence();
    for (int i = 0; i < prompt_tokens; ++i) {
      prompt[i] = 1000 + (37 * i + 101 * b) % (config.vocab_size - 1000);
    }
    auto logits = model.Prefill(seqs[b], prompt, {});
    if (!logits.ok()) return logits.status();
    next[b] = std::max_element(logits->begin(), logits->end()) - logits->begin();
  }
  std::printf("prefill of %d x %d tokens: %.2f ms\n", batch, prompt_tokens, MsSince(start));

  std::vector<StepInput> inputs(batch);
  for (int b = 0; b < batch; ++b)
    inputs[b] = {.sequence = seqs[b], .tokens = {&next[b], 1}, .prompt_tokens = 0};
  // Sampling runs on the backend, as in serving: only the ids come back.
  std::vector<Sampler> samplers;
  for (int b = 0; b < batch; ++b) {
    samplers.push_back(*Sampler::Create({.temperature = absl::GetFlag(FLAGS_temperature),
                                         .top_p = absl::GetFlag(FLAGS_top_p),
                                         .seed = static_cast<uint64_t>(b)}));
  }
  std::vector<kernels::RowSampling> draws(batch);
  DecodeRun run;
  for (int i = 0; i < steps; ++i) {
    if (i == absl::GetFlag(FLAGS_profile_step)) cudaProfilerStart();
    start = Clock::now();
    for (int b = 0; b < batch; ++b) draws[b] = samplers[b].NextDraw();
    auto step = decoder.ForwardSampled(inputs, draws);
    run.step_ms.push_back(MsSince(start));
    if (i == absl::GetFlag(FLAGS_profile_step)) cudaProfilerStop();
    if (!step.ok()) return step.status();
    for (int b = 0; b < batch; ++b) {
      if (!(*step)[b].ok()) return (*step)[b].status();
      next[b] = (*step)[b]->id;
    }
    run.tokens.push_back(next);
  }
  for (SequenceId seq : seqs) decoder.Release(seq);
  return run;
}

int Main() {
  const int batch = absl::GetFlag(FLAGS_batch), prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  const int warmup = absl::GetFlag(FLAGS_warmup_steps), steps = absl::GetFlag(FLAGS_steps);
  if (batch < 1 || prompt_tokens < 1 || warmup < 0 || steps < 1) {
    std::fprintf(stderr,
                 "decode_bench: --batch, --prompt_tokens and --steps must be positive, "
                 "--warmup_steps not negative\n");
    return 2;
  }
  const int positions = prompt_tokens + warmup + steps;
  const CacheOptions cache{
      .block_size = 16,
      .num_blocks = absl::GetFlag(FLAGS_auto_cache) ? 0 : batch * ((positions + 15) / 16)};
  absl::StatusOr<BenchModel> loaded = LoadBenchModel(
      absl::GetFlag(FLAGS_backend), absl::GetFlag(FLAGS_model), cache, absl::GetFlag(FLAGS_tp));
  if (!loaded.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  PixtralModel* model = loaded->model.get();
  const DecoderConfig& config = model->config().decoder;
  Decoder& decoder = model->decoder();
  std::printf("KV cache: %lld positions in %d blocks\n",
              static_cast<long long>(decoder.cache().capacity()),
              decoder.cache().layout().num_blocks);

  absl::StatusOr<DecodeRun> run = RunDecode(*model, batch, prompt_tokens, warmup + steps);
  if (!run.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", run.status().ToString().c_str());
    return 1;
  }
  const std::vector<double> times = TimedSteps(*run, warmup);
  double sum = 0;
  for (double t : times) sum += t;
  const double median = times[times.size() / 2];
  std::printf(
      "decode, batch %d, %d layers, dim %d, vocab %d: median %.2f ms/step (%.0f tokens/s), mean "
      "%.2f, min %.2f, max %.2f over %d steps (positions %d..%d)\n",
      batch, config.n_layers, config.dim, config.vocab_size, median, batch * 1000.0 / median,
      sum / times.size(), times.front(), times.back(), steps, prompt_tokens + warmup,
      positions - 1);
  if (absl::GetFlag(FLAGS_tp) > 1) {
    std::printf("all-reduce, tp %d: %.3f ms per step alone (%d of f32 [%d, %d])\n",
                absl::GetFlag(FLAGS_tp), AllReduceMsPerStep(*model, batch), 2 * config.n_layers,
                batch, config.dim);
  }
  std::printf("decode steps replayed from CUDA graphs: %lld (%lld recorded)\n",
              static_cast<long long>(decoder.decode_replays()),
              static_cast<long long>(decoder.decode_recordings()));
  // Greedy tokens of sequence 0, to compare across batch sizes.
  std::printf("sequence 0 tokens:");
  for (const std::vector<int32_t>& step : run->tokens) std::printf(" %d", step[0]);
  std::printf("\n");
  if (absl::GetFlag(FLAGS_compare_graphs)) {
    // The same run with the same kernels launched one by one, in this process (the same tuned
    // GEMM algorithms): every sequence's tokens should be the same.
    decoder.SetDecodeGraphs(DecodeGraphMode::kBuffers);
    absl::StatusOr<DecodeRun> eager = RunDecode(*model, batch, prompt_tokens, warmup + steps);
    if (!eager.ok()) {
      std::fprintf(stderr, "decode_bench: %s\n", eager.status().ToString().c_str());
      return 1;
    }
    const std::vector<double> eager_times = TimedSteps(*eager, warmup);
    std::printf("the same kernels launched one by one: median %.2f ms/step\n",
                eager_times[eager_times.size() / 2]);
    int equal = 0, total = 0, first_difference = -1;
    for (size_t i = 0; i < run->tokens.size(); ++i) {
      for (int b = 0; b < batch; ++b) {
        ++total;
        if (run->tokens[i][b] == eager->tokens[i][b]) {
          ++equal;
        } else if (first_difference < 0) {
          first_difference = static_cast<int>(i);
        }
      }
    }
    std::printf(
        "tokens with CUDA graphs against the same kernels launched one by one: %d of %d equal "
        "(first difference at step %d)\n",
        equal, total, first_difference);
    if (equal != total) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return pixtral::Main();
}
