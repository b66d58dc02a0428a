// The served system's benchmark (bench/served_scenarios.h): issue 8's H200 targets and issue 9's
// served path, against a running gateway with its vision and decoder workers.
//
//   served_bench --gateway=127.0.0.1:8000 --photo=photo.jpg --out=served.json
//
// One warm-up request with an image comes first (lazy CUDA and cuBLAS set-up on the workers).
// Prints one JSON object per scenario as it finishes, then writes them all to --out.
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/served_scenarios.h"
#include "services/client/gateway_client.h"

ABSL_FLAG(std::string, gateway, "127.0.0.1:8000", "host:port of the gateway.");
ABSL_FLAG(std::string, scenarios, "text,admit,multiturn,image",
          "Comma-separated: text | admit | multiturn | image.");
ABSL_FLAG(std::string, photo, "", "Image file the requests' images are made from; empty: drawn.");
ABSL_FLAG(int, image_side, 1024, "Square image side, pixels.");
ABSL_FLAG(int, text_streams, 64, "text: concurrent streams.");
ABSL_FLAG(int, text_prompt_tokens, 512, "text: prompt tokens per stream.");
ABSL_FLAG(int, text_output_tokens, 256, "text: output tokens per stream.");
ABSL_FLAG(int, text_rounds, 1,
          "text: requests each stream sends one after another; from 2 the report adds the steady "
          "state (every stream past its first request, none done with its last).");
ABSL_FLAG(int, admit_streams, 32, "admit: running text streams.");
ABSL_FLAG(int, admit_prompt_tokens, 128, "admit: their prompt tokens.");
ABSL_FLAG(int, admit_output_tokens, 256, "admit: their output tokens.");
ABSL_FLAG(int, admit_after_tokens, 16, "admit: tokens every stream has before the image.");
ABSL_FLAG(int, image_output_tokens, 8, "Output tokens of image requests.");
ABSL_FLAG(int, repeats, 3, "multiturn: chats; image: requests.");
ABSL_FLAG(
    int, step_token_budget, 2048,
    "admit: tokens in the decoder worker's steps that have decode rows (its "
    "--mixed_step_token_budget, or --step_token_budget without one), for the reported bound.");
ABSL_FLAG(int, timeout_s, 600, "Deadline of each call.");
ABSL_FLAG(int, ready_timeout_s, 60,
          "Retry the warm-up this long while the gateway is unavailable.");
ABSL_FLAG(std::string, out, "", "Write the reports here too, as one JSON object.");

namespace pixtral {
namespace {

absl::Status Run() {
  ServedOptions options{.text_streams = absl::GetFlag(FLAGS_text_streams),
                        .text_prompt_tokens = absl::GetFlag(FLAGS_text_prompt_tokens),
                        .text_output_tokens = absl::GetFlag(FLAGS_text_output_tokens),
                        .text_rounds = absl::GetFlag(FLAGS_text_rounds),
                        .admit_streams = absl::GetFlag(FLAGS_admit_streams),
                        .admit_prompt_tokens = absl::GetFlag(FLAGS_admit_prompt_tokens),
                        .admit_output_tokens = absl::GetFlag(FLAGS_admit_output_tokens),
                        .admit_after_tokens = absl::GetFlag(FLAGS_admit_after_tokens),
                        .image_side = absl::GetFlag(FLAGS_image_side),
                        .image_output_tokens = absl::GetFlag(FLAGS_image_output_tokens),
                        .repeats = absl::GetFlag(FLAGS_repeats),
                        .step_token_budget = absl::GetFlag(FLAGS_step_token_budget)};
  if (const std::string photo = absl::GetFlag(FLAGS_photo); !photo.empty()) {
    std::ifstream in(photo, std::ios::binary);
    if (!in) return absl::NotFoundError("cannot read --photo " + photo);
    options.photo.assign(std::istreambuf_iterator<char>(in), {});
  }
  std::unique_ptr<GatewayClient> client = GatewayClient::Create(
      absl::GetFlag(FLAGS_gateway), {.timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout_s))});
  {
    ServedOptions warm = options;
    warm.repeats = 1;
    warm.image_variant = 900;  // a picture no scenario sends
    warm.image_output_tokens = 2;
    // A gateway serves only health while it loads (UNIMPLEMENTED) and is UNAVAILABLE until it
    // has connected to both workers (polled every second).
    absl::StatusOr<nlohmann::json> r = RunImageScenario(*client, warm);
    for (int i = 0; i < absl::GetFlag(FLAGS_ready_timeout_s) &&
                    (absl::IsUnavailable(r.status()) || absl::IsUnimplemented(r.status()));
         ++i) {
      absl::SleepFor(absl::Seconds(1));
      r = RunImageScenario(*client, warm);
    }
    if (!r.ok()) return r.status();
    std::cout << "warm-up: " << (*r)["ttft_median_ms"] << " ms to the first token" << std::endl;
  }
  nlohmann::json all;
  for (absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_scenarios), ',')) {
    absl::StatusOr<nlohmann::json> report;
    if (name == "text") {
      report = RunTextScenario(*client, options);
    } else if (name == "admit") {
      report = RunAdmitScenario(*client, options);
    } else if (name == "multiturn") {
      report = RunMultiTurnScenario(*client, options);
    } else if (name == "image") {
      report = RunImageScenario(*client, options);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown scenario ", name));
    }
    if (!report.ok()) {
      return absl::Status(report.status().code(),
                          absl::StrCat(name, ": ", report.status().message()));
    }
    std::cout << "== " << name << "\n" << report->dump(2) << std::endl;
    all[std::string(name)] = *std::move(report);
  }
  // The targets' numbers on a few lines, after the long reports.
  auto line = [&](const char* scenario, std::initializer_list<const char*> keys) {
    if (!all.contains(scenario)) return;
    std::cout << "summary " << scenario << ":";
    for (const char* key : keys) std::cout << " " << key << "=" << all[scenario][key];
    std::cout << "\n";
  };
  line("text", {"output_tokens_per_s", "all_decoding_tokens_per_s", "prompt_tokens_median",
                "inter_token_median_ms", "ttft_median_ms"});
  line("admit", {"usual_gap_ms", "max_gap_during_image_ms", "bound_ms", "image_ttft_ms",
                 "image_prompt_tokens", "streams_running_at_image_first_token"});
  line("multiturn", {"turn1_ttft_median_ms", "turn2_ttft_median_ms", "turn2_over_turn1_median",
                     "new_chat_same_image_ttft_median_ms", "vision_cache_hits_new_chats"});
  line("image", {"ttft_median_ms", "e2e_median_ms", "prompt_tokens", "jpeg_bytes"});
  if (all.contains("image")) {
    std::cout << "summary image breakdown (ms): " << all["image"]["breakdown_median_ms"].dump()
              << "\n";
  }
  std::cout << std::flush;
  if (const std::string out = absl::GetFlag(FLAGS_out); !out.empty()) {
    std::ofstream(out) << all.dump(2) << "\n";
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::Status status = pixtral::Run();
  if (!status.ok()) {
    std::cerr << "served_bench: " << status << "\n";
    return 1;
  }
  return 0;
}
