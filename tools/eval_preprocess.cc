// pixtral_eval preprocess: one image through the gateway's loading and preprocessing.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/image_fetcher.h"
#include "common/image_processing.h"
#include "common/safetensors.h"
#include "tools/eval_commands.h"

namespace pixtral {
namespace {

// "--name value" and "--name=value" pairs; every name must be one of `known`.
absl::StatusOr<std::map<std::string, std::string>> ParseFlags(
    const std::vector<std::string>& args, const std::vector<std::string>& known) {
  std::map<std::string, std::string> flags;
  for (size_t i = 0; i < args.size(); ++i) {
    if (!absl::StartsWith(args[i], "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument ", args[i]));
    }
    std::string name = args[i].substr(2);
    std::string value;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    flags[name] = value;
  }
  return flags;
}

absl::Status Preprocess(const std::vector<std::string>& args) {
  absl::StatusOr<std::map<std::string, std::string>> flags =
      ParseFlags(args, {"image", "max-image-size", "patch-size", "out"});
  if (!flags.ok()) return flags.status();
  for (const char* required : {"image", "max-image-size", "out"}) {
    if (!flags->contains(required)) {
      return absl::InvalidArgumentError(absl::StrCat("--", required, " is required"));
    }
  }
  ImageEncoderConfig config;
  if (!absl::SimpleAtoi((*flags)["max-image-size"], &config.max_image_size) ||
      (flags->contains("patch-size") &&
       !absl::SimpleAtoi((*flags)["patch-size"], &config.patch_size))) {
    return absl::InvalidArgumentError("--max-image-size and --patch-size take integers");
  }

  ImageFetcher::Options options;
  options.allow_local_files = true;  // a local tool: paths are what it is given
  options.max_bytes = ImageDecodeLimits().max_encoded_bytes;
  absl::StatusOr<std::string> bytes = ImageFetcher(options).Fetch((*flags)["image"]);
  if (!bytes.ok()) return bytes.status();
  absl::StatusOr<PreprocessedImage> image = PreprocessImage(*bytes, config);
  if (!image.ok()) return image.status();

  const TensorToWrite pixels{{"pixels", DType::kF32, {3, image->height, image->width}},
                             AsBytes(image->pixels)};
  if (absl::Status status = WriteSafetensors((*flags)["out"], {&pixels, 1}); !status.ok()) {
    return status;
  }
  std::printf("{\"height\": %d, \"width\": %d, \"rows\": %d, \"cols\": %d}\n", image->height,
              image->width, image->grid.rows, image->grid.cols);
  return absl::OkStatus();
}

}  // namespace

int RunPreprocess(const std::vector<std::string>& args) {
  const absl::Status status = Preprocess(args);
  if (status.ok()) return 0;
  std::fprintf(stderr, "pixtral_eval preprocess: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace pixtral
