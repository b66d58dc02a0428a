// pixtral_eval preprocess: one image through the gateway's loading and preprocessing.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/image_fetcher.h"
#include "common/image_processing.h"
#include "common/safetensors.h"
#include "tools/eval_args.h"
#include "tools/eval_commands.h"

namespace pixtral {

int RunPreprocess(const std::vector<std::string>& argv) {
  constexpr char kCommand[] = "preprocess";
  absl::StatusOr<EvalArgs> args =
      EvalArgs::Parse(argv, {"image", "max-image-size", "patch-size", "out"}, {});
  if (!args.ok()) return ReportUsageError(kCommand, args.status());
  if (absl::Status s = args->Require({"image", "max-image-size", "out"}); !s.ok()) {
    return ReportUsageError(kCommand, s);
  }
  ImageEncoderConfig config;
  absl::StatusOr<int> max_image_size = args->GetInt("max-image-size", config.max_image_size);
  if (!max_image_size.ok()) return ReportUsageError(kCommand, max_image_size.status());
  absl::StatusOr<int> patch_size = args->GetInt("patch-size", config.patch_size);
  if (!patch_size.ok()) return ReportUsageError(kCommand, patch_size.status());
  config.max_image_size = *max_image_size;
  config.patch_size = *patch_size;

  ImageFetcher::Options options;
  options.allow_local_files = true;  // a local tool: paths are what it is given
  options.max_bytes = ImageDecodeLimits().max_encoded_bytes;
  absl::StatusOr<std::string> bytes = ImageFetcher(options).Fetch(args->Get("image"));
  if (!bytes.ok()) return ReportFailure(kCommand, bytes.status());
  absl::StatusOr<PreprocessedImage> image = PreprocessImage(*bytes, config);
  if (!image.ok()) return ReportFailure(kCommand, image.status());

  const TensorToWrite pixels{{"pixels", DType::kF32, {3, image->height, image->width}},
                             AsBytes(image->pixels)};
  if (absl::Status s = WriteSafetensors(args->Get("out"), {&pixels, 1}); !s.ok()) {
    return ReportFailure(kCommand, s);
  }
  std::printf("{\"height\": %d, \"width\": %d, \"rows\": %d, \"cols\": %d}\n", image->height,
              image->width, image->grid.rows, image->grid.cols);
  return 0;
}

}  // namespace pixtral
