// The load benchmark's workload: chat sessions of one or more turns, each turn a user message
// (text of a drawn length, the session's first turn possibly with an image) and an answer of a
// drawn length. Later turns repeat the conversation so far, so a serving system with a prefix
// cache recomputes only the new turn; images are drawn from a small set, so some repeat across
// sessions. Deterministic from the seed.
//
//   std::vector<LoadSession> sessions = MakeSessions({.sessions = 64, .image_fraction = 0.25});
#ifndef PIXTRAL_BENCH_LOAD_WORKLOAD_H_
#define PIXTRAL_BENCH_LOAD_WORKLOAD_H_

#include <cstdint>
#include <string>
#include <vector>

namespace pixtral {

struct LoadSpec {
  int sessions = 32;
  int max_turns = 2;                          // turns per session: uniform in [1, max_turns]
  double image_fraction = 0.5;                // sessions whose first turn carries an image
  int distinct_images = 4;                    // images are drawn from this many (some repeat)
  std::vector<int> image_sides = {256, 512};  // square images; side drawn per distinct image
  int min_prompt_words = 16;                  // words of a user message: uniform in [min, max]
  int max_prompt_words = 128;
  int min_output_tokens = 16;  // answer tokens (max_tokens, EOS ignored): uniform in [min, max]
  int max_output_tokens = 64;
  double cancel_fraction = 0;  // turns the client cancels halfway through their answer
  uint64_t seed = 1;
};

struct LoadTurn {
  std::string text;
  int image = -1;  // index into the workload's images, or -1
  int max_tokens = 0;
  bool cancel = false;  // the client goes away after max_tokens / 2 tokens
};

struct LoadSession {
  std::vector<LoadTurn> turns;
};

std::vector<LoadSession> MakeSessions(const LoadSpec& spec);

// The encoded PNG of distinct image `index` of `spec` (a deterministic picture).
std::string LoadImagePng(const LoadSpec& spec, int index);

}  // namespace pixtral

#endif  // PIXTRAL_BENCH_LOAD_WORKLOAD_H_
