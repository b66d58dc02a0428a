// Decode latency at batch 1: milliseconds per generated token of a model folder on a backend,
// measured through Decoder::Forward (each step ends by reading its logits back, so host clocks
// around a step time the whole step). For the Pixtral-12B shapes, write a random folder first:
//
//   make_random_model --out /tmp/pixtral-12b --preset pixtral-12b --vision=false
//   decode_bench --model /tmp/pixtral-12b --backend cuda
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "decoder/pixtral_model.h"
#include "kernels/create_backend.h"

ABSL_FLAG(std::string, model, "", "Model folder (params.json + consolidated.safetensors).");
ABSL_FLAG(std::string, backend, "cuda", "cpu | cuda.");
ABSL_FLAG(int, prompt_tokens, 16, "Prompt length before decoding.");
ABSL_FLAG(int, warmup_steps, 8, "Decode steps run before timing.");
ABSL_FLAG(int, steps, 64, "Timed decode steps.");

namespace pixtral {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

int Main() {
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  const int warmup = absl::GetFlag(FLAGS_warmup_steps), steps = absl::GetFlag(FLAGS_steps);
  if (prompt_tokens < 1 || warmup < 0 || steps < 1) {
    std::fprintf(stderr, "decode_bench: --prompt_tokens and --steps must be positive\n");
    return 2;
  }
  auto backend = kernels::CreateBackend(absl::GetFlag(FLAGS_backend));
  if (!backend.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", backend.status().ToString().c_str());
    return 1;
  }
  const int positions = prompt_tokens + warmup + steps;
  const CacheOptions cache{.block_size = 16, .num_blocks = (positions + 15) / 16};
  Clock::time_point start = Clock::now();
  auto model = PixtralModel::Load(absl::GetFlag(FLAGS_model), backend->get(), cache);
  if (!model.ok()) {
    std::fprintf(stderr, "decode_bench: %s\n", model.status().ToString().c_str());
    return 1;
  }
  std::printf("load: %.1f s\n", MsSince(start) / 1000);
  const DecoderConfig& config = (*model)->config().decoder;

  Decoder& decoder = (*model)->decoder();
  const SequenceId seq = decoder.AddSequence();
  std::vector<int32_t> prompt(prompt_tokens);
  for (int i = 0; i < prompt_tokens; ++i) prompt[i] = 1000 + 37 * i % (config.vocab_size - 1000);
  start = Clock::now();
  auto logits = (*model)->Prefill(seq, prompt, {});
  if (!logits.ok()) {
    std::fprintf(stderr, "decode_bench: prefill: %s\n", logits.status().ToString().c_str());
    return 1;
  }
  std::printf("prefill of %d tokens: %.2f ms\n", prompt_tokens, MsSince(start));

  std::vector<double> times;
  for (int i = 0; i < warmup + steps; ++i) {
    const int32_t next = std::max_element(logits->begin(), logits->end()) - logits->begin();
    start = Clock::now();
    auto step = decoder.Forward({{.sequence = seq, .tokens = {&next, 1}}});
    const double ms = MsSince(start);
    if (!step.ok()) {
      std::fprintf(stderr, "decode_bench: step %d: %s\n", i, step.status().ToString().c_str());
      return 1;
    }
    *logits = std::move((*step)[0]);
    if (i >= warmup) times.push_back(ms);
  }
  decoder.Release(seq);
  std::sort(times.begin(), times.end());
  double sum = 0;
  for (double t : times) sum += t;
  std::printf(
      "decode, batch 1, %d layers, dim %d, vocab %d: median %.2f ms/token, mean %.2f, min %.2f, "
      "max %.2f over %d steps (positions %d..%d)\n",
      config.n_layers, config.dim, config.vocab_size, times[times.size() / 2], sum / times.size(),
      times.front(), times.back(), steps, prompt_tokens + warmup, positions - 1);
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return pixtral::Main();
}
