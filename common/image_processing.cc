#include "common/image_processing.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "opencv2/imgproc.hpp"

namespace pixtral {
namespace {

// CLIP's dataset statistics, R, G, B, as mistral_common spells them (float64 there too).
constexpr double kMean[3] = {0.48145466, 0.4578275, 0.40821073};
constexpr double kStd[3] = {0.26862954, 0.26130258, 0.27577711};

constexpr int kMaxConfigValue = 1 << 15;

// Python's round(): nearest, ties to even (std::round sends ties away from zero).
double RoundHalfEven(double value) {
  const double rounded = std::round(value);
  if (std::fabs(value - std::trunc(value)) != 0.5) return rounded;
  return 2.0 * std::round(value / 2.0);
}

// Python's (size - 1) // unit + 1 for size >= 0: zero stays zero.
int CeilDiv(int64_t size, int unit) {
  return size <= 0 ? 0 : static_cast<int>((size - 1) / unit + 1);
}

}  // namespace

absl::Status ValidateImageEncoderConfig(const ImageEncoderConfig& config) {
  auto in_range = [](int value) { return value >= 1 && value <= kMaxConfigValue; };
  if (!in_range(config.patch_size) || !in_range(config.max_image_size) ||
      !in_range(config.spatial_merge_size) ||
      int64_t{config.patch_size} * config.spatial_merge_size > kMaxConfigValue) {
    return absl::InvalidArgumentError(absl::StrCat(
        "image config needs patch_size, max_image_size and spatial_merge_size in [1, ",
        kMaxConfigValue, "] with patch_size * spatial_merge_size <= ", kMaxConfigValue, "; got ",
        config.patch_size, ", ", config.max_image_size, ", ", config.spatial_merge_size));
  }
  return absl::OkStatus();
}

ImageTokenGrid ComputeImageTokenGrid(int height, int width, const ImageEncoderConfig& config) {
  if (height <= 0 || width <= 0 || !ValidateImageEncoderConfig(config).ok()) return {0, 0};
  double h = height;
  double w = width;
  const double ratio = std::max(h / config.max_image_size, w / config.max_image_size);
  if (ratio > 1) {
    w = RoundHalfEven(w / ratio);
    h = RoundHalfEven(h / ratio);
  }
  const int unit = config.patch_size * config.spatial_merge_size;
  return {CeilDiv(static_cast<int64_t>(h), unit), CeilDiv(static_cast<int64_t>(w), unit)};
}

absl::StatusOr<PreprocessedImage> PreprocessRgbImage(const cv::Mat& rgb,
                                                     const ImageEncoderConfig& config) {
  if (absl::Status status = ValidateImageEncoderConfig(config); !status.ok()) return status;
  if (rgb.type() != CV_8UC3 || rgb.empty()) {
    return absl::InvalidArgumentError("preprocessing needs a non-empty 8-bit RGB image");
  }
  const ImageTokenGrid grid = ComputeImageTokenGrid(rgb.rows, rgb.cols, config);
  if (grid.rows == 0 || grid.cols == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("a ", rgb.cols, "x", rgb.rows, " image is too thin: scaled to fit ",
                     config.max_image_size, " pixels, a side rounds to zero"));
  }
  const int unit = config.patch_size * config.spatial_merge_size;
  PreprocessedImage out;
  out.grid = grid;
  out.height = grid.rows * unit;
  out.width = grid.cols * unit;

  // mistral_common resizes the float32 image (cv2.resize of np.float32), not the 8-bit one.
  cv::Mat as_float;
  cv::Mat resized;
  try {
    rgb.convertTo(as_float, CV_32F);
    cv::resize(as_float, resized, cv::Size(out.width, out.height), 0, 0, cv::INTER_CUBIC);
  } catch (const cv::Exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("image resize failed: ", e.what()));
  }

  // Then x / 255 in float32 and (x - mean) / std in float64, rounded once to float32.
  const size_t plane = static_cast<size_t>(out.height) * out.width;
  out.pixels.resize(3 * plane);
  for (int y = 0; y < out.height; ++y) {
    const auto* row = resized.ptr<cv::Vec3f>(y);
    for (int x = 0; x < out.width; ++x) {
      const size_t at = static_cast<size_t>(y) * out.width + x;
      for (int c = 0; c < 3; ++c) {
        const float scaled = row[x][c] / 255.0f;
        out.pixels[c * plane + at] = static_cast<float>((scaled - kMean[c]) / kStd[c]);
      }
    }
  }
  return out;
}

absl::StatusOr<PreprocessedImage> PreprocessImage(absl::string_view encoded_bytes,
                                                  const ImageEncoderConfig& config,
                                                  const ImageDecodeLimits& limits) {
  // The float32 copy of preprocessing is the largest allocation: reserve for decoding and
  // preprocessing together, and let the decode itself reserve nothing more.
  ImageMemoryBudget::Reservation reservation;
  ImageDecodeLimits decode_limits = limits;
  if (limits.memory_budget != nullptr) {
    // A file refused anyway is refused for its own reason, before it competes for memory.
    absl::StatusOr<ImageHeader> header = CheckImageBeforeDecoding(encoded_bytes, limits);
    if (!header.ok()) return header.status();
    absl::StatusOr<ImageMemoryBudget::Reservation> reserved =
        limits.memory_budget->Reserve(PeakImageBytes(header->width, header->height));
    if (!reserved.ok()) return reserved.status();
    reservation = *std::move(reserved);
    decode_limits.memory_budget = nullptr;
  }
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(encoded_bytes, decode_limits);
  if (!rgb.ok()) return rgb.status();
  return PreprocessRgbImage(*rgb, config);
}

}  // namespace pixtral
