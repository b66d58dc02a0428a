#include "common/testing/pixtral_tiny.h"

#include <utility>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

// `values`, or a failure of the running test and an empty vector.
template <typename T>
std::vector<T> ValuesOrFail(const std::string& name, absl::StatusOr<std::vector<T>> values) {
  if (values.ok()) return *std::move(values);
  ADD_FAILURE() << "golden tensor " << name << ": " << values.status();
  return {};
}

}  // namespace

absl::StatusOr<PixtralTinyGolden> PixtralTinyGolden::Open() {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(std::string(kPixtralTinyDir) + "/golden.safetensors");
  if (!file.ok()) return file.status();
  return PixtralTinyGolden(*std::move(file));
}

std::vector<float> PixtralTinyGolden::Floats(const std::string& name) const {
  const TensorView* tensor = file_->Find(name);
  if (tensor == nullptr) return ValuesOrFail<float>(name, absl::NotFoundError("absent"));
  return ValuesOrFail(name, ToFloat32(*tensor));
}

std::vector<int32_t> PixtralTinyGolden::Ids(const std::string& name) const {
  const TensorView* tensor = file_->Find(name);
  if (tensor == nullptr) return ValuesOrFail<int32_t>(name, absl::NotFoundError("absent"));
  const std::vector<int64_t> ids = ValuesOrFail(name, ToInt64(*tensor));
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::vector<GoldenImage> PixtralTinyGolden::Images() const {
  std::vector<GoldenImage> images;
  for (const char* name : {"pixel_values_0", "pixel_values_1"}) {
    const TensorView* tensor = file_->Find(name);
    if (tensor == nullptr || tensor->shape.size() != 3) {
      return ValuesOrFail<GoldenImage>(
          name, absl::NotFoundError("absent or not of shape [3, height, width]"));
    }
    images.push_back({tensor->shape[1], tensor->shape[2], Floats(name)});
  }
  return images;
}

}  // namespace pixtral
