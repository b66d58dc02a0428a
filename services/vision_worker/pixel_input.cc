#include "services/vision_worker/pixel_input.h"

#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "common/image_processing.h"

namespace pixtral {
namespace {

absl::Status Invalid(int index, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("image ", index, ": ", what));
}

// The encoder's own rule for a side: a positive multiple of the patch up to the largest image.
bool ValidSide(int64_t side, const PixelLimits& limits) {
  return side > 0 && side <= limits.max_image_size && side % limits.patch_size == 0;
}

absl::Status SideError(int index, const PixelLimits& limits) {
  return Invalid(index, absl::StrCat("H and W must be positive multiples of ", limits.patch_size,
                                     " up to ", limits.max_image_size));
}

// float32 [channels, H, W], normalized: borrowed from the request.
absl::StatusOr<Image> ViewNormalized(int index, const v1::Tensor& t, const PixelLimits& limits) {
  if (t.dtype() != v1::Tensor::DTYPE_F32) return Invalid(index, "pixels must be F32");
  if (t.shape_size() != 3 || t.shape(0) != limits.num_channels) {
    return Invalid(index, absl::StrCat("shape must be [", limits.num_channels, ", H, W]"));
  }
  const int64_t height = t.shape(1), width = t.shape(2);
  if (!ValidSide(height, limits) || !ValidSide(width, limits)) return SideError(index, limits);
  const size_t count = static_cast<size_t>(limits.num_channels * height * width);
  if (t.data().size() != count * sizeof(float)) {
    return Invalid(index, "data size does not match the shape");
  }
  if (reinterpret_cast<uintptr_t>(t.data().data()) % alignof(float) != 0) {
    return absl::InternalError("misaligned pixel buffer");
  }
  return Image{height, width,
               absl::Span<const float>(reinterpret_cast<const float*>(t.data().data()), count)};
}

// 8-bit RGB before resizing: resized and normalized into `out`.
absl::StatusOr<absl::Span<const float>> NormalizeRgb8(int index, const v1::RgbImage& rgb,
                                                      const PixelLimits& limits,
                                                      std::unique_ptr<float[]>* out) {
  if (limits.num_channels != 3) {
    return Invalid(index, absl::StrCat("8-bit RGB needs a 3-channel encoder; this one has ",
                                       limits.num_channels));
  }
  if (!ValidSide(rgb.target_height(), limits) || !ValidSide(rgb.target_width(), limits)) {
    return Invalid(index, absl::StrCat("target H and W must be positive multiples of ",
                                       limits.patch_size, " up to ", limits.max_image_size,
                                       ", got ", rgb.target_width(), "x", rgb.target_height()));
  }
  if (rgb.height() <= 0 || rgb.width() <= 0) {
    return Invalid(index, absl::StrCat("the RGB image is ", rgb.width(), "x", rgb.height()));
  }
  const int64_t source_pixels = int64_t{rgb.height()} * rgb.width();
  const int64_t target = int64_t{rgb.target_height()} * rgb.target_width();
  if (source_pixels > kMaxSourcePixelsPerTargetPixel * target) {
    return Invalid(index, absl::StrCat("a ", rgb.width(), "x", rgb.height(),
                                       " RGB image has more than ", kMaxSourcePixelsPerTargetPixel,
                                       " times the pixels of its ", rgb.target_width(), "x",
                                       rgb.target_height(), " target; send it as F32"));
  }
  if (static_cast<int64_t>(rgb.data().size()) != source_pixels * 3) {
    return Invalid(index, absl::StrCat("a ", rgb.width(), "x", rgb.height(), " RGB image needs ",
                                       source_pixels * 3, " bytes, got ", rgb.data().size()));
  }
  const size_t count = static_cast<size_t>(3 * target);
  *out = std::make_unique_for_overwrite<float[]>(count);
  const absl::Span<float> pixels(out->get(), count);
  if (absl::Status status = ResizeAndNormalizeRgb8Into(
          absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(rgb.data().data()),
                                    rgb.data().size()),
          rgb.height(), rgb.width(), rgb.target_height(), rgb.target_width(), pixels);
      !status.ok()) {
    return Invalid(index, status.message());
  }
  return pixels;
}

}  // namespace

absl::StatusOr<ReceivedImages> ReadImages(const v1::EncodeRequest& request,
                                          const PixelLimits& limits) {
  if (request.images_size() > 0 && request.inputs_size() > 0) {
    return absl::InvalidArgumentError("a request fills images or inputs, not both");
  }
  const int count = request.images_size() + request.inputs_size();
  if (count == 0) return absl::InvalidArgumentError("no images");
  if (count > limits.max_images_per_request) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", limits.max_images_per_request,
                                                   " images per request, got ", count));
  }
  ReceivedImages out;
  out.views.reserve(count);
  for (int i = 0; i < count; ++i) {
    const v1::ImageInput* input = request.inputs_size() > 0 ? &request.inputs(i) : nullptr;
    if (input == nullptr || input->has_normalized()) {
      absl::StatusOr<Image> view =
          ViewNormalized(i, input == nullptr ? request.images(i) : input->normalized(), limits);
      if (!view.ok()) return view.status();
      out.views.push_back(*view);
    } else if (input->has_rgb8()) {
      const absl::Time start = absl::Now();
      absl::StatusOr<absl::Span<const float>> pixels =
          NormalizeRgb8(i, input->rgb8(), limits, &out.normalized.emplace_back());
      if (!pixels.ok()) return pixels.status();
      out.normalize_time += absl::Now() - start;
      ++out.rgb8_images;
      out.views.push_back({input->rgb8().target_height(), input->rgb8().target_width(), *pixels});
    } else {
      return Invalid(i, "no pixels");
    }
    out.total_patches += (out.views.back().height / limits.patch_size) *
                         (out.views.back().width / limits.patch_size);
  }
  return out;
}

}  // namespace pixtral
