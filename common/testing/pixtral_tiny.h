// The pixtral-tiny test model (tests/data/pixtral-tiny: 2 layers of width 64, random bf16
// weights) and its goldens, what Hugging Face transformers computed on it in float32 (the
// tensors are described in golden.json). Tests that check the model against the reference open
// the goldens here.
//
//   absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
//   ASSERT_TRUE(golden.ok()) << golden.status();
//   std::vector<int32_t> prompt = golden->Ids("input_ids");
//   std::vector<GoldenImage> images = golden->Images();
//   EXPECT_LE(RelativeError(logits, golden->Floats("logits")), 1e-4);
#ifndef PIXTRAL_COMMON_TESTING_PIXTRAL_TINY_H_
#define PIXTRAL_COMMON_TESTING_PIXTRAL_TINY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/safetensors.h"

namespace pixtral {

// The model folder, relative to the test's working directory (the runfiles root).
inline constexpr char kPixtralTinyDir[] = "tests/data/pixtral-tiny";

// One image of the multimodal prompt as the reference preprocessed it: float32 [3, height, width].
struct GoldenImage {
  int64_t height = 0;
  int64_t width = 0;
  std::vector<float> pixels;
};

class PixtralTinyGolden {
 public:
  static absl::StatusOr<PixtralTinyGolden> Open();

  // The named tensor's values. A tensor that is absent or of the wrong kind fails the test and
  // gives an empty vector.
  std::vector<float> Floats(const std::string& name) const;
  std::vector<int32_t> Ids(const std::string& name) const;

  // pixel_values_0 and pixel_values_1, the images of "input_ids" in order.
  std::vector<GoldenImage> Images() const;

  const SafetensorsFile& file() const { return *file_; }

 private:
  explicit PixtralTinyGolden(std::unique_ptr<SafetensorsFile> file) : file_(std::move(file)) {}

  std::unique_ptr<SafetensorsFile> file_;
};

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_TESTING_PIXTRAL_TINY_H_
