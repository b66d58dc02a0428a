// Preprocessing against mistral_common's own output on real photos (pixtral-tiny goldens, packed
// by tests/data/images/make_preprocess_golden.py). OpenCV 5.0 from Python made them; this
// machine's OpenCV differs only in the last bits of its float SIMD paths, hence the tolerances.
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/image_processing.h"
#include "common/safetensors.h"
#include "common/testing/files.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

constexpr char kDataDir[] = "tests/data/images/";

absl::StatusOr<std::string> Gunzip(const std::string& compressed) {
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return absl::InternalError("inflateInit2");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  std::string out;
  char buffer[1 << 16];
  int result = Z_OK;
  while (result == Z_OK) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof(buffer);
    result = inflate(&stream, Z_NO_FLUSH);
    out.append(buffer, sizeof(buffer) - stream.avail_out);
  }
  inflateEnd(&stream);
  if (result != Z_STREAM_END) return absl::DataLossError("corrupt gzip data");
  return out;
}

// A golden case: F32 [3, H, W], or U8 [4, 3, H, W] byte planes of the little-endian floats.
absl::StatusOr<std::vector<float>> Unpack(const TensorView& tensor, std::vector<int64_t>* shape) {
  if (tensor.dtype == DType::kF32) {
    *shape = tensor.shape;
    return ToFloat32(tensor);
  }
  if (tensor.dtype != DType::kU8 || tensor.shape.size() != 4 || tensor.shape[0] != 4) {
    return absl::InvalidArgumentError("unexpected golden layout for " + tensor.name);
  }
  shape->assign(tensor.shape.begin() + 1, tensor.shape.end());
  const size_t count = tensor.bytes.size() / 4;
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) {
    const uint32_t bits = uint32_t{tensor.bytes[i]} | (uint32_t{tensor.bytes[count + i]} << 8) |
                          (uint32_t{tensor.bytes[2 * count + i]} << 16) |
                          (uint32_t{tensor.bytes[3 * count + i]} << 24);
    std::memcpy(&values[i], &bits, sizeof(float));
  }
  return values;
}

struct GoldenCase {
  const char* name;
  const char* file;
  int max_image_size;
  int width_tokens;  // from golden.json
  int height_tokens;
};

class PreprocessGoldenTest : public ::testing::TestWithParam<GoldenCase> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::string> bytes =
        Gunzip(ReadFileOrFail(std::string(kDataDir) + "preprocess_golden.safetensors.gz"));
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
        SafetensorsFile::FromBytes(*std::move(bytes), "preprocess_golden");
    ASSERT_TRUE(file.ok()) << file.status();
    goldens_ = file->release();
  }
  static void TearDownTestSuite() {
    delete goldens_;
    goldens_ = nullptr;
  }
  static SafetensorsFile* goldens_;
};

SafetensorsFile* PreprocessGoldenTest::goldens_ = nullptr;

TEST_P(PreprocessGoldenTest, MatchesMistralCommon) {
  const GoldenCase& golden = GetParam();
  ASSERT_NE(goldens_, nullptr);
  const TensorView* tensor = goldens_->Find(golden.name);
  ASSERT_NE(tensor, nullptr) << golden.name;
  std::vector<int64_t> shape;
  absl::StatusOr<std::vector<float>> expected = Unpack(*tensor, &shape);
  ASSERT_TRUE(expected.ok()) << expected.status();

  const std::string encoded = ReadFileOrFail(std::string(kDataDir) + golden.file);
  ASSERT_FALSE(encoded.empty()) << golden.file;
  absl::StatusOr<PreprocessedImage> image =
      PreprocessImage(encoded, {.patch_size = 16, .max_image_size = golden.max_image_size});
  ASSERT_TRUE(image.ok()) << image.status();

  EXPECT_EQ(image->grid.cols, golden.width_tokens);
  EXPECT_EQ(image->grid.rows, golden.height_tokens);
  ASSERT_EQ(shape, (std::vector<int64_t>{3, image->height, image->width}));
  ASSERT_EQ(image->pixels.size(), expected->size());
  double max_error = 0;
  double sum_error = 0;
  for (size_t i = 0; i < expected->size(); ++i) {
    const double error = std::fabs(double{image->pixels[i]} - (*expected)[i]);
    max_error = std::max(max_error, error);
    sum_error += error;
  }
  const double mean_error = sum_error / expected->size();
  EXPECT_LE(max_error, 1e-4) << golden.name;
  EXPECT_LT(mean_error, 1e-6) << golden.name;
  RecordProperty("max_abs_error", std::to_string(max_error));
  RecordProperty("mean_abs_error", std::to_string(mean_error));
}

// The gateway's 8-bit RGB, resized and normalized on the vision worker (ResizeAndNormalizeRgb8),
// gives the very floats of preprocessing on the gateway, so the same goldens hold.
TEST_P(PreprocessGoldenTest, Rgb8NormalizedElsewhereGivesTheSameFloats) {
  const GoldenCase& golden = GetParam();
  const std::string encoded = ReadFileOrFail(std::string(kDataDir) + golden.file);
  const ImageEncoderConfig config{.patch_size = 16, .max_image_size = golden.max_image_size};
  absl::StatusOr<PreprocessedImage> floats = PreprocessImage(encoded, config);
  absl::StatusOr<PreprocessedImage> bytes =
      PreprocessImage(encoded, config, {}, PixelForm::kRgb8IfSmaller);
  ASSERT_TRUE(floats.ok()) << floats.status();
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(bytes->grid.rows, floats->grid.rows);
  EXPECT_EQ(bytes->grid.cols, floats->grid.cols);
  // An image shrunk to less than a quarter of its pixels stays floats (kRgb8IfSmaller).
  RecordProperty("sent_as_rgb8", bytes->normalized() ? "no" : "yes");
  if (!bytes->normalized()) {
    EXPECT_LE(bytes->rgb8.size(), floats->pixels.size() * sizeof(float));
    ASSERT_TRUE(NormalizeInPlace(*bytes).ok());
  }
  EXPECT_EQ(bytes->pixels, floats->pixels) << golden.name;
}

INSTANTIATE_TEST_SUITE_P(
    AllPhotos, PreprocessGoldenTest,
    ::testing::Values(GoldenCase{"chelsea.max1024", "chelsea.png", 1024, 29, 19},
                      GoldenCase{"chelsea.max256", "chelsea.png", 256, 16, 11},
                      GoldenCase{"astronaut.max1024", "astronaut.png", 1024, 32, 32},
                      GoldenCase{"astronaut.max256", "astronaut.png", 256, 16, 16},
                      GoldenCase{"coffee.max1024", "coffee.png", 1024, 38, 25},
                      GoldenCase{"coffee.max256", "coffee.png", 256, 16, 11},
                      GoldenCase{"camera.max1024", "camera.png", 1024, 32, 32},
                      GoldenCase{"camera.max256", "camera.png", 256, 16, 16},
                      GoldenCase{"astronaut_rgba.max1024", "astronaut_rgba.png", 1024, 13, 19},
                      GoldenCase{"coffee_big_jpg.max1024", "coffee_big.jpg", 1024, 64, 43}),
    [](const ::testing::TestParamInfo<GoldenCase>& info) {
      std::string name = info.param.name;
      for (char& c : name) {
        if (c == '.') c = '_';
      }
      return name;
    });

}  // namespace
}  // namespace pixtral
