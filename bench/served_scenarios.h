// The served system's targets as measured scenarios, over the public gRPC API of a running gateway
// (issue 8's H200 targets and issue 9's served path; bench/served_bench.cc runs them):
//   text       N concurrent text streams of a fixed prompt length and output length: output
//              tokens/s over the whole run and while all N decode at once.
//   admit      an image prompt admitted into N running text streams: the running streams' largest
//              gap between tokens while it prefills, against their usual gap (step time).
//   multiturn  a chat about an image: the second turn's time to first token against the first's
//              (prefix cache), and the same image in a new chat (image cache: the vision worker's
//              cache_hits in the x-pixtral-timing trailer).
//   image      one image (a JPEG made from a photo) per request, a new one each time: time to first
//              token, end to end, and where the time went (the trailer's names, and the wire as the
//              difference between what the gateway waited and what the worker spent).
// Each returns its JSON report; times are milliseconds. Prompts start with a unique word and
// images differ per request, so nothing is a cache hit unless the scenario means it to be.
//
//   nlohmann::json report = RunTextScenario(*client, {.text_streams = 64});
#ifndef PIXTRAL_BENCH_SERVED_SCENARIOS_H_
#define PIXTRAL_BENCH_SERVED_SCENARIOS_H_

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "services/client/gateway_client.h"

namespace pixtral {

struct ServedOptions {
  int text_streams = 64;
  int text_prompt_tokens = 512;
  int text_output_tokens = 256;
  // text: requests each stream sends one after another (a closed loop, each with a prompt of its
  // own). From 2 on the report adds the steady state: the window in which every stream has
  // finished its first request and none its last, new prompts prefilling beside the decodes.
  int text_rounds = 1;
  int admit_streams = 32;
  int admit_prompt_tokens = 128;
  int admit_output_tokens = 256;
  int admit_after_tokens = 16;  // the image is sent once every stream has this many tokens
  int image_side = 1024;        // square images, resized from the photo
  std::string photo;            // encoded image bytes; empty: a drawn picture
  int image_output_tokens = 8;
  int repeats = 3;           // multiturn and image: chats / requests measured (after one warm-up)
  int image_variant = 4000;  // image: the first request's picture (others follow)
  // admit: tokens in the decoder worker's steps that have decode rows, for the bound it reports
  int step_token_budget = 2048;
};

absl::StatusOr<nlohmann::json> RunTextScenario(const GatewayClient& client,
                                               const ServedOptions& options);
absl::StatusOr<nlohmann::json> RunAdmitScenario(const GatewayClient& client,
                                                const ServedOptions& options);
absl::StatusOr<nlohmann::json> RunMultiTurnScenario(const GatewayClient& client,
                                                    const ServedOptions& options);
absl::StatusOr<nlohmann::json> RunImageScenario(const GatewayClient& client,
                                                const ServedOptions& options);

// A user message's text whose chat prompt is `tokens` tokens long (within a few: words are drawn
// until the gateway's tokenizer says so), starting with a word unique to `seed`.
absl::StatusOr<std::string> TextOfPromptTokens(const GatewayClient& client, int tokens,
                                               uint64_t seed);

// The photo (or a drawn picture) resized to side x side with a mark unique to `variant`, as JPEG.
std::string VariantJpeg(const std::string& photo, int side, int variant);

}  // namespace pixtral

#endif  // PIXTRAL_BENCH_SERVED_SCENARIOS_H_
