#include "common/image_processing.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "opencv2/core/utility.hpp"
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

absl::StatusOr<std::vector<float>> ResizeAndNormalizeRgb8(absl::Span<const uint8_t> rgb, int height,
                                                          int width, int out_height,
                                                          int out_width) {
  if (out_height <= 0 || out_width <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("image sizes must be positive, got ", width, "x",
                                                   height, " to ", out_width, "x", out_height));
  }
  std::vector<float> pixels(size_t{3} * out_height * out_width);
  if (absl::Status status = ResizeAndNormalizeRgb8Into(rgb, height, width, out_height, out_width,
                                                       absl::MakeSpan(pixels));
      !status.ok()) {
    return status;
  }
  return pixels;
}

absl::Status ResizeAndNormalizeRgb8Into(absl::Span<const uint8_t> rgb, int height, int width,
                                        int out_height, int out_width, absl::Span<float> pixels) {
  if (height <= 0 || width <= 0 || out_height <= 0 || out_width <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("image sizes must be positive, got ", width, "x",
                                                   height, " to ", out_width, "x", out_height));
  }
  if (static_cast<int64_t>(rgb.size()) != int64_t{height} * width * 3) {
    return absl::InvalidArgumentError(absl::StrCat("a ", width, "x", height, " RGB image has ",
                                                   int64_t{height} * width * 3, " bytes, got ",
                                                   rgb.size()));
  }
  const size_t plane = static_cast<size_t>(out_height) * out_width;
  if (pixels.size() != 3 * plane) {
    return absl::InvalidArgumentError(absl::StrCat("a ", out_width, "x", out_height,
                                                   " image needs ", 3 * plane, " floats, got ",
                                                   pixels.size()));
  }
  if (height == out_height && width == out_width) {
    // cv::resize copies an image whose size is already right, so each value is one of 256 per
    // channel: a table of them gives the same floats at a fraction of the cost.
    float table[3][256];
    for (int c = 0; c < 3; ++c) {
      for (int v = 0; v < 256; ++v) {
        const float scaled = static_cast<float>(v) / 255.0f;
        table[c][v] = static_cast<float>((scaled - kMean[c]) / kStd[c]);
      }
    }
    // Rows in parallel on OpenCV's thread pool (every value is independent): a 1024x1024 image
    // took ~10 ms on one core of the H200's host (bench/NOTES.md run 18).
    cv::parallel_for_(cv::Range(0, out_height), [&](const cv::Range& rows) {
      for (size_t at = static_cast<size_t>(rows.start) * out_width,
                  end = static_cast<size_t>(rows.end) * out_width;
           at < end; ++at) {
        for (int c = 0; c < 3; ++c) pixels[c * plane + at] = table[c][rgb[3 * at + c]];
      }
    });
    return absl::OkStatus();
  }
  // mistral_common resizes the float32 image (cv2.resize of np.float32), not the 8-bit one.
  cv::Mat resized;
  try {
    const cv::Mat source(height, width, CV_8UC3, const_cast<uint8_t*>(rgb.data()));
    cv::Mat as_float;
    source.convertTo(as_float, CV_32F);
    cv::resize(as_float, resized, cv::Size(out_width, out_height), 0, 0, cv::INTER_CUBIC);
  } catch (const cv::Exception& e) {
    return absl::ResourceExhaustedError(absl::StrCat("image resize failed: ", e.what()));
  }
  // Then x / 255 in float32 and (x - mean) / std in float64, rounded once to float32; rows in
  // parallel as above.
  cv::parallel_for_(cv::Range(0, out_height), [&](const cv::Range& rows) {
    for (int y = rows.start; y < rows.end; ++y) {
      const auto* row = resized.ptr<cv::Vec3f>(y);
      for (int x = 0; x < out_width; ++x) {
        const size_t at = static_cast<size_t>(y) * out_width + x;
        for (int c = 0; c < 3; ++c) {
          const float scaled = row[x][c] / 255.0f;
          pixels[c * plane + at] = static_cast<float>((scaled - kMean[c]) / kStd[c]);
        }
      }
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<PreprocessedImage> PreprocessRgbImage(const cv::Mat& rgb,
                                                     const ImageEncoderConfig& config,
                                                     PixelForm form) {
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

  const int64_t source_bytes = int64_t{rgb.rows} * rgb.cols * 3;
  const int64_t float_bytes = int64_t{out.height} * out.width * 3 * int64_t{sizeof(float)};
  if (form == PixelForm::kRgb8IfSmaller && source_bytes <= float_bytes) {
    out.source_height = rgb.rows;
    out.source_width = rgb.cols;
    out.rgb8.resize(static_cast<size_t>(source_bytes));
    for (int y = 0; y < rgb.rows; ++y) {  // rows of a cv::Mat need not be contiguous
      std::memcpy(out.rgb8.data() + static_cast<size_t>(y) * rgb.cols * 3, rgb.ptr<uint8_t>(y),
                  static_cast<size_t>(rgb.cols) * 3);
    }
    return out;
  }
  const cv::Mat contiguous = rgb.isContinuous() ? rgb : rgb.clone();
  absl::StatusOr<std::vector<float>> pixels = ResizeAndNormalizeRgb8(
      absl::Span<const uint8_t>(contiguous.ptr<uint8_t>(0), static_cast<size_t>(source_bytes)),
      rgb.rows, rgb.cols, out.height, out.width);
  if (!pixels.ok()) return pixels.status();
  out.pixels = *std::move(pixels);
  return out;
}

absl::Status NormalizeInPlace(PreprocessedImage& image) {
  if (image.normalized()) return absl::OkStatus();
  absl::StatusOr<std::vector<float>> pixels = ResizeAndNormalizeRgb8(
      image.rgb8, image.source_height, image.source_width, image.height, image.width);
  if (!pixels.ok()) return pixels.status();
  image.pixels = *std::move(pixels);
  image.rgb8 = std::vector<uint8_t>();
  return absl::OkStatus();
}

absl::StatusOr<PreprocessedImage> PreprocessImage(absl::string_view encoded_bytes,
                                                  const ImageEncoderConfig& config,
                                                  const ImageDecodeLimits& limits, PixelForm form,
                                                  ImagePreprocessTimes* times) {
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
  const absl::Time start = absl::Now();
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(encoded_bytes, decode_limits);
  if (!rgb.ok()) return rgb.status();
  const absl::Time decoded = absl::Now();
  absl::StatusOr<PreprocessedImage> image = PreprocessRgbImage(*rgb, config, form);
  if (times != nullptr) *times = {decoded - start, absl::Now() - decoded};
  return image;
}

}  // namespace pixtral
