#include "bench/load_workload.h"

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "absl/strings/str_cat.h"
#include "common/splitmix64.h"

namespace pixtral {
namespace {

// A uniform integer in [lo, hi].
int Between(SplitMix64& rng, int lo, int hi) {
  return lo + static_cast<int>(rng.Uniform() * (hi - lo + 1)) % (hi - lo + 1);
}

constexpr const char* kWords[] = {"the",   "image",  "shows", "a",     "river", "under", "old",
                                  "stone", "bridge", "with",  "light", "rain",  "and",   "two",
                                  "cats",  "near",   "green", "trees", "why",   "what"};

}  // namespace

std::vector<LoadSession> MakeSessions(const LoadSpec& spec) {
  SplitMix64 rng(spec.seed);
  std::vector<LoadSession> sessions(spec.sessions);
  for (LoadSession& session : sessions) {
    const int turns = Between(rng, 1, std::max(spec.max_turns, 1));
    const bool image = rng.Uniform() < spec.image_fraction && spec.distinct_images > 0;
    for (int t = 0; t < turns; ++t) {
      LoadTurn turn;
      const int words = Between(rng, spec.min_prompt_words, spec.max_prompt_words);
      for (int w = 0; w < words; ++w) {
        absl::StrAppend(&turn.text, w > 0 ? " " : "", kWords[Between(rng, 0, 19)]);
      }
      if (t == 0 && image) turn.image = Between(rng, 0, spec.distinct_images - 1);
      turn.max_tokens = Between(rng, spec.min_output_tokens, spec.max_output_tokens);
      turn.cancel = rng.Uniform() < spec.cancel_fraction;
      session.turns.push_back(std::move(turn));
    }
  }
  return sessions;
}

std::string LoadImagePng(const LoadSpec& spec, int index) {
  SplitMix64 rng(spec.seed * 1000003 + index);
  const int side = spec.image_sides[Between(rng, 0, std::ssize(spec.image_sides) - 1)];
  cv::Mat image(side, side, CV_8UC3);
  const int a = Between(rng, 1, 7), b = Between(rng, 1, 7), c = Between(rng, 0, 255);
  for (int y = 0; y < side; ++y) {
    for (int x = 0; x < side; ++x) {
      image.at<cv::Vec3b>(y, x) = cv::Vec3b((a * x + c) % 256, (b * y) % 256, (x ^ y) % 256);
    }
  }
  std::vector<uchar> png;
  cv::imencode(".png", image, png);
  return std::string(png.begin(), png.end());
}

}  // namespace pixtral
