// The image prompt's latencies on a backend, for each image count and size asked for, each the
// median of repeats after warm-up:
//   vision:  PixtralModel::EmbedImages of the prompt's images in one batch (pixel upload, patch
//            convolution, encoder with block-diagonal attention over the images, adapter), then
//            one row of the adapted features read back;
//   prefill: one Decoder::Forward over the whole prompt with those features (last logits back);
//   ttft:    time to first token, PixtralModel::Prefill with the images plus a greedy Sampler pick
//            (--ttft=false skips it).
// The prompt is <s> [INST], then for each --image_sizes square image its [IMG] layout (rows of
// [IMG] ending in [IMG_BREAK], the last in [IMG_END]), then --text_tokens text tokens and
// [/INST]: one 1024x1024 image with 50 text tokens is the 4213-token prompt of
// ../shared/ref/hf_anchors.py (whose vision and prefill figures are for that case only). Pixels
// are random normals (as normalized pixels are), tokens arbitrary ids. Ends with one summary line
// per case. For the Pixtral-12B shapes, write a random folder first:
//
//   make_random_model --out /tmp/pixtral-12b --preset pixtral-12b
//   prompt_bench --model /tmp/pixtral-12b --backend cuda --images 1,2,4 --image_sizes 512,1024
#include <cuda_profiler_api.h>

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
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/bench_model.h"
#include "decoder/pixtral_model.h"
#include "decoder/sampler.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, model, "", "Model folder with a vision encoder.");
ABSL_FLAG(std::string, backend, "cuda", "cpu | cuda.");
ABSL_FLAG(int, tp, 1, "Tensor-parallel ranks of the decoder (cuda: GPUs 0..tp-1, NCCL).");
ABSL_FLAG(std::string, image_sizes, "1024",
          "Sides of the square images, in pixels, comma-separated.");
ABSL_FLAG(std::string, images, "1",
          "Images per prompt, comma-separated: every count at every size.");
ABSL_FLAG(int, text_tokens, 50, "Text tokens after the images.");
ABSL_FLAG(bool, ttft, true, "Also time PixtralModel::Prefill with the images and a first pick.");
ABSL_FLAG(int, warmup, 1, "Untimed runs of each measurement first.");
ABSL_FLAG(int, repeats, 5, "Timed runs of each measurement.");
ABSL_FLAG(bool, profile, false,
          "Bracket the first timed run of each measurement by cudaProfilerStart/Stop, for "
          "ncu --profile-from-start off.");

namespace pixtral {
namespace {

struct Stats {
  double median = 0, min = 0, max = 0;
};

// Runs `run` warmup + repeats times and prints the median, min and max of the timed runs.
absl::StatusOr<Stats> Measure(const std::string& what, int warmup, int repeats,
                              const std::function<absl::Status()>& run) {
  std::vector<double> times;
  for (int i = 0; i < warmup + repeats; ++i) {
    const bool profiled = i == warmup && absl::GetFlag(FLAGS_profile);
    if (profiled) cudaProfilerStart();
    const Clock::time_point start = Clock::now();
    if (absl::Status status = run(); !status.ok()) return status;
    if (i >= warmup) times.push_back(MsSince(start));
    if (profiled) cudaProfilerStop();
  }
  std::sort(times.begin(), times.end());
  const Stats stats{times[times.size() / 2], times.front(), times.back()};
  std::printf("%s: median %.2f ms, min %.2f, max %.2f over %d runs\n", what.c_str(), stats.median,
              stats.min, stats.max, repeats);
  std::fflush(stdout);
  return stats;
}

absl::StatusOr<std::vector<int>> ParseList(const std::string& flag, const char* name) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(flag, ',')) {
    int v;
    if (!absl::SimpleAtoi(part, &v) || v < 1) {
      return absl::InvalidArgumentError(absl::StrCat("bad --", name, " entry '", part, "'"));
    }
    out.push_back(v);
  }
  return out;
}

// <s> [INST], each image's [IMG] layout, `text` text tokens, [/INST].
std::vector<int32_t> PromptTokens(const VisionEncoderConfig& vision, int vocab, int side, int count,
                                  int text) {
  const int grid = side / vision.patch_size;
  std::vector<int32_t> tokens = {1, 3};
  for (int i = 0; i < count; ++i) {
    for (int r = 0; r < grid; ++r) {
      tokens.insert(tokens.end(), grid, vision.image_token_id);
      tokens.push_back(r + 1 < grid ? vision.image_break_token_id : vision.image_end_token_id);
    }
  }
  for (int i = 0; i < text; ++i) tokens.push_back((1000 + 37 * i % 20000) % vocab);
  tokens.push_back(4);
  return tokens;
}

int Main() {
  const int warmup = absl::GetFlag(FLAGS_warmup), repeats = absl::GetFlag(FLAGS_repeats);
  const int text = absl::GetFlag(FLAGS_text_tokens);
  absl::StatusOr<std::vector<int>> sides =
      ParseList(absl::GetFlag(FLAGS_image_sizes), "image_sizes");
  absl::StatusOr<std::vector<int>> counts = ParseList(absl::GetFlag(FLAGS_images), "images");
  if (!sides.ok() || !counts.ok() || warmup < 0 || repeats < 1 || text < 0) {
    std::fprintf(stderr, "prompt_bench: %s\n",
                 !sides.ok()    ? sides.status().ToString().c_str()
                 : !counts.ok() ? counts.status().ToString().c_str()
                                : "--repeats must be positive, --warmup and --text_tokens not "
                                  "negative");
    return 2;
  }
  // The longest prompt sizes the cache; each measurement releases its sequence.
  const int max_side = *std::max_element(sides->begin(), sides->end());
  const int max_count = *std::max_element(counts->begin(), counts->end());
  const int64_t max_grid = max_side / 8;  // patch sizes are at least 8: an upper bound
  const int64_t max_length = max_count * max_grid * (max_grid + 1) + text + 3;
  const CacheOptions cache{.block_size = 16, .num_blocks = (max_length + 15) / 16};
  absl::StatusOr<BenchModel> loaded = LoadBenchModel(
      absl::GetFlag(FLAGS_backend), absl::GetFlag(FLAGS_model), cache, absl::GetFlag(FLAGS_tp));
  if (!loaded.ok()) {
    std::fprintf(stderr, "prompt_bench: %s\n", loaded.status().ToString().c_str());
    return 1;
  }
  PixtralModel& m = *loaded->model;
  kernels::Backend* backend = loaded->backend.get();
  if (!m.config().vision.has_value()) {
    std::fprintf(stderr, "prompt_bench: the model has no vision encoder\n");
    return 1;
  }
  const VisionEncoderConfig& vision = *m.config().vision;
  const int vocab = m.config().decoder.vocab_size;
  Decoder& decoder = m.decoder();

  std::vector<std::string> summary;
  for (const int side : *sides) {
    for (const int count : *counts) {
      const std::vector<int32_t> tokens = PromptTokens(vision, vocab, side, count, text);
      // Image's pixels are a view: their storage lives as long as the case.
      std::vector<std::vector<float>> pixels(count);
      std::vector<Image> images;
      std::mt19937 rng(7);
      std::normal_distribution<float> normal;
      for (std::vector<float>& image : pixels) {
        image.resize(int64_t{vision.num_channels} * side * side);
        for (float& p : image) p = normal(rng);
        images.push_back({.height = side, .width = side, .pixels = image});
      }
      const int grid = side / vision.patch_size;
      const std::string label =
          absl::StrCat(count, " x ", side, "x", side, " (", count * grid * grid, " patches, ",
                       tokens.size(), " tokens)");
      std::printf("== prompt: %s\n", label.c_str());

      kernels::Tensor features;
      absl::StatusOr<Stats> v =
          Measure("vision (encoder + adapter), " + label, warmup, repeats, [&] {
            auto adapted = m.EmbedImages(tokens, images);
            if (!adapted.ok()) return adapted.status();
            features = *std::move(adapted);
            // Reading the last row back waits for the queued work.
            const kernels::Tensor last = features.Rows(features.shape()[0] - 1, 1);
            std::vector<float> row(last.shape()[1]);
            backend->CopyToHost(last, row.data());
            return absl::OkStatus();
          });
      absl::StatusOr<Stats> p = v.ok() ? absl::StatusOr<Stats>(Stats{}) : v.status();
      if (v.ok()) {
        p = Measure("prefill (decoder only), " + label, warmup, repeats, [&] {
          const SequenceId seq = decoder.AddSequence();
          auto logits =
              decoder.Forward({{.sequence = seq, .tokens = tokens, .image_features = features}});
          decoder.Release(seq);
          return logits.status();
        });
      }
      features = kernels::Tensor();  // free before the next case
      if (p.ok() && absl::GetFlag(FLAGS_tp) > 1) {
        std::printf("all-reduce, tp %d: %.3f ms per prefill alone (%d of f32 [%zu, %d])\n",
                    absl::GetFlag(FLAGS_tp), AllReduceMsPerStep(m, std::ssize(tokens), 5),
                    2 * m.config().decoder.n_layers, tokens.size(), m.config().decoder.dim);
      }
      absl::StatusOr<Stats> t = Stats{};
      if (p.ok() && absl::GetFlag(FLAGS_ttft)) {
        t = Measure("time to first token (Prefill with the images + greedy pick), " + label, warmup,
                    repeats, [&]() -> absl::Status {
                      absl::StatusOr<Sampler> sampler = Sampler::Create({});
                      if (!sampler.ok()) return sampler.status();
                      const SequenceId seq = decoder.AddSequence();
                      auto logits = m.Prefill(seq, tokens, images);
                      absl::StatusOr<SampledToken> first =
                          logits.ok() ? sampler->Sample(*logits) : logits.status();
                      decoder.Release(seq);
                      if (first.ok() && (first->id < 0 || first->id >= vocab)) {
                        return absl::InternalError("sampled token outside the vocabulary");
                      }
                      return first.status();
                    });
      }
      for (const absl::Status& status : {v.status(), p.status(), t.status()}) {
        if (!status.ok()) {
          std::fprintf(stderr, "prompt_bench: %s: %s\n", label.c_str(), status.ToString().c_str());
          return 1;
        }
      }
      summary.push_back(absl::StrFormat(
          "| %d | %d | %zu | %.2f | %.2f | %s |", count, side, tokens.size(), v->median, p->median,
          absl::GetFlag(FLAGS_ttft) ? absl::StrFormat("%.2f", t->median) : std::string("-")));
    }
  }
  std::printf(
      "\n| images | side | tokens | vision + adapter, ms | prefill, ms | ttft, ms |\n"
      "|---|---|---|---|---|---|\n");
  for (const std::string& line : summary) std::printf("%s\n", line.c_str());
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  google::InstallFailureSignalHandler();     // a crash prints its stack
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines reach a pipe before a crash
  return pixtral::Main();
}
