#include "common/image_decode.h"

#include <gif_lib.h>
#include <zlib.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "opencv2/imgcodecs.hpp"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

// A small image with a different value in every channel of every pixel, built in R, G, B
// order and stored in OpenCV's B, G, R order for the encoders.
struct TestImage {
  std::vector<cv::Vec3b> rgb;  // row-major
  cv::Mat bgr;
};

TestImage MakeTestImage(int width, int height) {
  TestImage image;
  image.bgr.create(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      const cv::Vec3b rgb(static_cast<uint8_t>(7 * x + 3 * y), static_cast<uint8_t>(100 + 5 * y),
                          static_cast<uint8_t>(250 - 11 * x - y));
      image.rgb.push_back(rgb);
      image.bgr.at<cv::Vec3b>(y, x) = cv::Vec3b(rgb[2], rgb[1], rgb[0]);
    }
  }
  return image;
}

std::string Encode(const std::string& extension, const cv::Mat& image,
                   const std::vector<int>& params = {}) {
  std::vector<uint8_t> bytes;
  EXPECT_TRUE(cv::imencode(extension, image, bytes, params)) << extension;
  return std::string(bytes.begin(), bytes.end());
}

// Noise compresses badly, so cutting the file in half cuts into the pixel data.
cv::Mat Noise(int width, int height) {
  cv::Mat noise(height, width, CV_8UC3);
  cv::randu(noise, 0, 256);
  return noise;
}

void ExpectPixels(const cv::Mat& rgb, const std::vector<cv::Vec3b>& expected) {
  ASSERT_EQ(rgb.type(), CV_8UC3);
  ASSERT_EQ(static_cast<size_t>(rgb.rows) * rgb.cols, expected.size());
  for (int y = 0; y < rgb.rows; ++y) {
    for (int x = 0; x < rgb.cols; ++x) {
      ASSERT_EQ(rgb.at<cv::Vec3b>(y, x), expected[y * rgb.cols + x]) << "at " << x << "," << y;
    }
  }
}

void PutBe32(std::string& bytes, size_t at, uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>(value >> (24 - 8 * i));
}

// Rewrites a PNG's IHDR dimensions and fixes the chunk's CRC.
std::string WithPngSize(std::string png, uint32_t width, uint32_t height) {
  PutBe32(png, 16, width);
  PutBe32(png, 20, height);
  PutBe32(png, 29, crc32(0, reinterpret_cast<const Bytef*>(png.data() + 12), 17));
  return png;
}

// --- GIF encoding through giflib, for inputs OpenCV cannot write ---

int AppendGifBytes(GifFileType* gif, const GifByteType* bytes, int length) {
  static_cast<std::string*>(gif->UserData)->append(reinterpret_cast<const char*>(bytes), length);
  return length;
}

struct GifSpec {
  int screen_width;
  int screen_height;
  int background = 0;
  int left = 0;
  int top = 0;
  int width;
  int height;
  bool interlace = false;
  int transparent = -1;
  std::vector<GifColorType> palette;  // a power of two entries
  // The frame's color indices, one row per entry, in the order the file stores them.
  std::vector<std::vector<GifPixelType>> stored_rows;
};

std::string EncodeGif(const GifSpec& spec) {
  std::string out;
  int error = 0;
  GifFileType* gif = EGifOpen(&out, AppendGifBytes, &error);
  EXPECT_NE(gif, nullptr);
  EGifSetGifVersion(gif, true);
  ColorMapObject* colors =
      GifMakeMapObject(static_cast<int>(spec.palette.size()), spec.palette.data());
  EXPECT_EQ(
      EGifPutScreenDesc(gif, spec.screen_width, spec.screen_height, 8, spec.background, colors),
      GIF_OK);
  if (spec.transparent >= 0) {
    GraphicsControlBlock control{DISPOSAL_UNSPECIFIED, false, 0, spec.transparent};
    GifByteType extension[4];
    const size_t length = EGifGCBToExtension(&control, extension);
    EXPECT_EQ(EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, length, extension), GIF_OK);
  }
  EXPECT_EQ(
      EGifPutImageDesc(gif, spec.left, spec.top, spec.width, spec.height, spec.interlace, nullptr),
      GIF_OK);
  for (std::vector<GifPixelType> row : spec.stored_rows) {
    EXPECT_EQ(EGifPutLine(gif, row.data(), spec.width), GIF_OK);
  }
  EXPECT_EQ(EGifCloseFile(gif, &error), GIF_OK);
  GifFreeMapObject(colors);
  return out;
}

const std::vector<GifColorType> kPalette = {
    {10, 20, 30}, {200, 100, 50}, {0, 255, 0}, {90, 80, 70}};

TEST(ReadImageHeaderTest, ReadsEveryFormat) {
  const cv::Mat image = MakeTestImage(37, 21).bgr;
  for (const auto& [extension, format] :
       std::vector<std::pair<std::string, ImageFormat>>{{".png", ImageFormat::kPng},
                                                        {".jpg", ImageFormat::kJpeg},
                                                        {".webp", ImageFormat::kWebp},
                                                        {".bmp", ImageFormat::kBmp}}) {
    absl::StatusOr<ImageHeader> header = ReadImageHeader(Encode(extension, image));
    ASSERT_TRUE(header.ok()) << extension << ": " << header.status();
    EXPECT_EQ(header->format, format) << extension;
    EXPECT_EQ(header->width, 37) << extension;
    EXPECT_EQ(header->height, 21) << extension;
  }
  absl::StatusOr<ImageHeader> lossy_webp =
      ReadImageHeader(Encode(".webp", image, {cv::IMWRITE_WEBP_QUALITY, 80}));
  ASSERT_TRUE(lossy_webp.ok()) << lossy_webp.status();
  EXPECT_EQ(lossy_webp->width, 37);
  EXPECT_EQ(lossy_webp->height, 21);

  GifSpec gif{.screen_width = 300, .screen_height = 2, .width = 1, .height = 1};
  gif.palette = kPalette;
  gif.stored_rows = {{1}};
  absl::StatusOr<ImageHeader> gif_header = ReadImageHeader(EncodeGif(gif));
  ASSERT_TRUE(gif_header.ok()) << gif_header.status();
  EXPECT_EQ(gif_header->format, ImageFormat::kGif);
  EXPECT_EQ(gif_header->width, 300);
  EXPECT_EQ(gif_header->height, 2);
}

TEST(DecodeImageToRgbTest, LosslessFormatsRoundTripInRgbOrder) {
  const TestImage image = MakeTestImage(23, 17);
  for (const auto& [extension, params] : std::vector<std::pair<std::string, std::vector<int>>>{
           {".png", {}}, {".bmp", {}}, {".webp", {cv::IMWRITE_WEBP_QUALITY, 101}}}) {
    SCOPED_TRACE(extension);
    absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(Encode(extension, image.bgr, params));
    ASSERT_TRUE(rgb.ok()) << rgb.status();
    ExpectPixels(*rgb, image.rgb);
  }
}

TEST(DecodeImageToRgbTest, JpegDecodesCloseToTheOriginal) {
  const cv::Mat solid(16, 16, CV_8UC3, cv::Scalar(40, 120, 200));  // B, G, R
  absl::StatusOr<cv::Mat> rgb =
      DecodeImageToRgb(Encode(".jpg", solid, {cv::IMWRITE_JPEG_QUALITY, 100}));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  const cv::Vec3b pixel = rgb->at<cv::Vec3b>(8, 8);
  EXPECT_NEAR(pixel[0], 200, 2);
  EXPECT_NEAR(pixel[1], 120, 2);
  EXPECT_NEAR(pixel[2], 40, 2);
}

TEST(DecodeImageToRgbTest, GrayIsReplicated) {
  cv::Mat gray(2, 3, CV_8UC1);
  for (int i = 0; i < 6; ++i) gray.data[i] = static_cast<uint8_t>(40 * i + 1);
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(Encode(".png", gray));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  ExpectPixels(
      *rgb,
      {{1, 1, 1}, {41, 41, 41}, {81, 81, 81}, {121, 121, 121}, {161, 161, 161}, {201, 201, 201}});
}

TEST(DecodeImageToRgbTest, SixteenBitSamplesKeepTheirHighByte) {
  cv::Mat deep(1, 2, CV_16UC3);
  deep.at<cv::Vec3w>(0, 0) = cv::Vec3w(0x0102, 0x8081, 0xFFFF);  // B, G, R
  deep.at<cv::Vec3w>(0, 1) = cv::Vec3w(0x00FF, 0x7F00, 0x1234);
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(Encode(".png", deep));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  ExpectPixels(*rgb, {{0xFF, 0x80, 0x01}, {0x12, 0x7F, 0x00}});
}

TEST(DecodeImageToRgbTest, AlphaIsCompositedOnWhiteLikePil) {
  cv::Mat bgra(1, 4, CV_8UC4);
  bgra.at<cv::Vec4b>(0, 0) = cv::Vec4b(200, 100, 0, 0);    // transparent: white
  bgra.at<cv::Vec4b>(0, 1) = cv::Vec4b(200, 100, 0, 255);  // opaque: unchanged
  bgra.at<cv::Vec4b>(0, 2) = cv::Vec4b(200, 100, 0, 128);
  bgra.at<cv::Vec4b>(0, 3) = cv::Vec4b(0, 0, 0, 1);
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(Encode(".png", bgra));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  // round((255 * (255 - a) + c * a) / 255): a=128 gives 127.0, 177.2, 227.4; a=1 gives 254.0.
  ExpectPixels(*rgb, {{255, 255, 255}, {0, 100, 200}, {127, 177, 227}, {254, 254, 254}});
}

TEST(DecodeImageToRgbTest, RgbPngColorKeyIsIgnoredLikePil) {
  // An RGB PNG whose tRNS chunk makes (0, 100, 200) transparent: PIL keeps mode RGB, so the
  // pixel is not whitened.
  cv::Mat bgr(1, 2, CV_8UC3, cv::Scalar(200, 100, 0));
  bgr.at<cv::Vec3b>(0, 1) = cv::Vec3b(1, 2, 3);
  std::string png = Encode(".png", bgr);
  std::string trns("\0\0\0\6tRNS\0\0\0\x64\0\xC8", 14);
  std::string crc(4, '\0');
  PutBe32(crc, 0, crc32(0, reinterpret_cast<const Bytef*>(trns.data() + 4), 10));
  png.insert(33, trns + crc);
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(png);
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  ExpectPixels(*rgb, {{0, 100, 200}, {3, 2, 1}});
}

TEST(DecodeImageToRgbTest, GrayPngColorKeyBecomesWhiteLikePil) {
  cv::Mat gray(1, 3, CV_8UC1);
  gray.data[0] = 41;
  gray.data[1] = 42;
  gray.data[2] = 41;
  std::string png = Encode(".png", gray);
  std::string trns("\0\0\0\2tRNS\0\x29", 10);  // gray value 41 is transparent
  std::string crc(4, '\0');
  PutBe32(crc, 0, crc32(0, reinterpret_cast<const Bytef*>(trns.data() + 4), 6));
  png.insert(33, trns + crc);
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(png);
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  ExpectPixels(*rgb, {{255, 255, 255}, {42, 42, 42}, {255, 255, 255}});
}

TEST(DecodeImageToRgbTest, GifFirstFrameWithTransparencyAndOffset) {
  // A 4x2 screen with background color 3; a 2x2 frame at (1, 0) whose index 2 is transparent.
  GifSpec spec{.screen_width = 4,
               .screen_height = 2,
               .background = 3,
               .left = 1,
               .width = 2,
               .height = 2,
               .transparent = 2};
  spec.palette = kPalette;
  spec.stored_rows = {{0, 1}, {2, 1}};
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(EncodeGif(spec));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  const cv::Vec3b white(255, 255, 255);
  ExpectPixels(*rgb, {white,
                      {10, 20, 30},
                      {200, 100, 50},
                      white,  //
                      white,
                      white,
                      {200, 100, 50},
                      white});
}

TEST(DecodeImageToRgbTest, GifWithoutTransparencyFillsWithColorZero) {
  // PIL fills what the first frame leaves uncovered with index 0, not the background color.
  GifSpec spec{.screen_width = 3, .screen_height = 1, .background = 1, .width = 1, .height = 1};
  spec.palette = kPalette;
  spec.stored_rows = {{2}};
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(EncodeGif(spec));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  ExpectPixels(*rgb, {{0, 255, 0}, {10, 20, 30}, {10, 20, 30}});
}

TEST(DecodeImageToRgbTest, GifWithoutColorTableIsGray) {
  // giflib will not write such a file: write one with a 4-entry global table, then cut it out.
  GifSpec spec{.screen_width = 2, .screen_height = 1, .width = 2, .height = 1};
  spec.palette = kPalette;
  spec.stored_rows = {{3, 2}};
  std::string gif = EncodeGif(spec);
  gif[10] = static_cast<char>(gif[10] & 0x7F);  // no global color table
  gif.erase(13, 3 * kPalette.size());
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(gif);
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  ExpectPixels(*rgb, {{3, 3, 3}, {2, 2, 2}});
}

TEST(DecodeImageToRgbTest, InterlacedGifRowsLandInPlace) {
  // Nine rows stored in the four interlace passes: 0 8 | 4 | 2 6 | 1 3 5 7. Row r holds color r%4.
  GifSpec spec{.screen_width = 1, .screen_height = 9, .width = 1, .height = 9, .interlace = true};
  spec.palette = kPalette;
  for (int row : {0, 8, 4, 2, 6, 1, 3, 5, 7}) {
    spec.stored_rows.push_back({static_cast<GifPixelType>(row % 4)});
  }
  absl::StatusOr<cv::Mat> rgb = DecodeImageToRgb(EncodeGif(spec));
  ASSERT_TRUE(rgb.ok()) << rgb.status();
  std::vector<cv::Vec3b> expected;
  for (int row = 0; row < 9; ++row) {
    const GifColorType& c = kPalette[row % 4];
    expected.push_back({c.Red, c.Green, c.Blue});
  }
  ExpectPixels(*rgb, expected);
}

void ExpectInvalid(const absl::StatusOr<cv::Mat>& result, const std::string& message) {
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
  EXPECT_THAT(result.status().message(), HasSubstr(message));
}

TEST(DecodeImageToRgbTest, EmptyDataIsInvalid) { ExpectInvalid(DecodeImageToRgb(""), "empty"); }

TEST(DecodeImageToRgbTest, NonImageBytesAreInvalid) {
  ExpectInvalid(DecodeImageToRgb("hello, world: not an image"), "unrecognized");
  ExpectInvalid(DecodeImageToRgb(std::string("II*\0\x08\0\0\0", 8)), "unrecognized");  // TIFF
}

TEST(DecodeImageToRgbTest, TruncatedFilesAreInvalid) {
  const cv::Mat noise = Noise(64, 48);
  GifSpec gif{.screen_width = 64, .screen_height = 48, .width = 64, .height = 48};
  gif.palette = kPalette;
  for (int y = 0; y < 48; ++y) {
    std::vector<GifPixelType> row;
    for (int x = 0; x < 64; ++x) row.push_back(noise.at<cv::Vec3b>(y, x)[0] % 4);
    gif.stored_rows.push_back(row);
  }
  for (const auto& [name, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"png", Encode(".png", noise)},
           {"jpeg", Encode(".jpg", noise)},
           {"webp", Encode(".webp", noise, {cv::IMWRITE_WEBP_QUALITY, 101})},
           {"bmp", Encode(".bmp", noise)},
           {"gif", EncodeGif(gif)}}) {
    for (size_t length : {bytes.size() / 2, bytes.size() - 8, size_t{20}}) {
      SCOPED_TRACE(name + " cut to " + std::to_string(length));
      const absl::StatusOr<cv::Mat> result = DecodeImageToRgb(bytes.substr(0, length));
      EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
    }
  }
}

TEST(DecodeImageToRgbTest, CorruptPixelDataIsInvalid) {
  std::string png = Encode(".png", Noise(32, 32));
  for (size_t i = 60; i < png.size() - 20; i += 7) png[i] = static_cast<char>(png[i] ^ 0x5A);
  ExpectInvalid(DecodeImageToRgb(png), "could not be decoded");
}

void ExpectExhausted(const absl::StatusOr<cv::Mat>& result) {
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted) << result.status();
}

TEST(DecodeImageToRgbTest, DecompressionBombsAreRefusedFromTheHeader) {
  const cv::Mat small = MakeTestImage(8, 8).bgr;
  // A few hundred bytes claiming billions of pixels, in every format.
  ExpectExhausted(DecodeImageToRgb(WithPngSize(Encode(".png", small), 100000, 100000)));

  std::string jpeg = Encode(".jpg", small);
  const size_t sof = jpeg.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  jpeg.replace(sof + 5, 4, "\xFD\xE8\xFD\xE8");  // 65000 x 65000
  ExpectExhausted(DecodeImageToRgb(jpeg));

  std::string webp = Encode(".webp", small, {cv::IMWRITE_WEBP_QUALITY, 101});
  ASSERT_EQ(webp.substr(12, 4), "VP8L");
  webp.replace(21, 4, "\xFF\xFF\xFF\x0F");  // 16384 x 16384
  ExpectExhausted(DecodeImageToRgb(webp));

  std::string bmp = Encode(".bmp", small);
  bmp.replace(18, 8, std::string("\x00\x00\x01\x00\x00\x00\x01\x00", 8));  // 65536 x 65536
  ExpectExhausted(DecodeImageToRgb(bmp));

  GifSpec gif{.screen_width = 65535, .screen_height = 65535, .width = 1, .height = 1};
  gif.palette = kPalette;
  gif.stored_rows = {{1}};
  ExpectExhausted(DecodeImageToRgb(EncodeGif(gif)));
}

TEST(DecodeImageToRgbTest, JpegWithTooManyScansIsRefused) {
  std::string jpeg = Encode(".jpg", MakeTestImage(8, 8).bgr, {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  EXPECT_TRUE(DecodeImageToRgb(jpeg).ok());
  // Start-of-scan markers (with an empty, invalid scan header each) ahead of the real ones.
  const size_t first_scan = jpeg.find("\xFF\xDA");
  std::string fake_scans;
  for (int i = 0; i < 500; ++i) fake_scans += std::string("\xFF\xDA\x00\x02", 4);
  jpeg.insert(first_scan + 2, fake_scans);
  ExpectInvalid(DecodeImageToRgb(jpeg), "more than 500 scans");
}

// Start-of-scan markers in a JPEG's body, counted independently of the decoder.
int CountScans(const std::string& jpeg) {
  int scans = 0;
  for (size_t at = jpeg.find("\xFF\xDA"); at != std::string::npos;
       at = jpeg.find("\xFF\xDA", at + 2)) {
    ++scans;
  }
  return scans;
}

TEST(DecodeImageToRgbTest, ProgressiveJpegCostIsBoundedByScansTimesPixels) {
  const std::string jpeg = Encode(".jpg", Noise(256, 128), {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  const int scans = CountScans(jpeg);
  ASSERT_GT(scans, 5);  // libjpeg's progressive script
  const int64_t cost = int64_t{scans} * 256 * 128;
  EXPECT_TRUE(DecodeImageToRgb(jpeg, {.max_jpeg_scan_pixels = cost}).ok());
  ExpectExhausted(DecodeImageToRgb(jpeg, {.max_jpeg_scan_pixels = cost - 1}));
  // A baseline JPEG is one scan: the budget is its pixel count.
  const std::string baseline = Encode(".jpg", Noise(256, 128));
  ASSERT_EQ(CountScans(baseline), 1);
  EXPECT_TRUE(DecodeImageToRgb(baseline, {.max_jpeg_scan_pixels = 256 * 128}).ok());
}

TEST(DecodeImageToRgbTest, ManyScansOverALargeFrameAreRefusedBeforeDecoding) {
  // The hostile file of the security review: 499 scans over 5600 x 5600 pixels (18 s of CPU when
  // decoded). Built from a small progressive JPEG by enlarging its frame header and adding scans.
  std::string jpeg = Encode(".jpg", MakeTestImage(8, 8).bgr, {cv::IMWRITE_JPEG_PROGRESSIVE, 1});
  const size_t sof = jpeg.find("\xFF\xC2");
  ASSERT_NE(sof, std::string::npos);
  jpeg.replace(sof + 5, 4, "\x15\xE0\x15\xE0");  // 5600 x 5600
  std::string more_scans;
  for (int i = CountScans(jpeg); i < 499; ++i) more_scans += std::string("\xFF\xDA\x00\x02", 4);
  jpeg.insert(jpeg.find("\xFF\xDA") + 2, more_scans);
  const absl::Time start = absl::Now();
  const absl::StatusOr<cv::Mat> decoded = DecodeImageToRgb(jpeg);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
  ExpectExhausted(decoded);
  EXPECT_THAT(decoded.status().message(), HasSubstr("499 scans"));
}

TEST(ImageMemoryBudgetTest, ReservationsShareTheBudgetAndGiveItBack) {
  ImageMemoryBudget budget(100);
  absl::StatusOr<ImageMemoryBudget::Reservation> a = budget.Reserve(60);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(budget.in_use(), 60);
  EXPECT_EQ(budget.Reserve(41).status().code(), absl::StatusCode::kResourceExhausted);
  {
    absl::StatusOr<ImageMemoryBudget::Reservation> b = budget.Reserve(40);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(budget.in_use(), 100);
    ImageMemoryBudget::Reservation moved = *std::move(b);
    EXPECT_EQ(budget.in_use(), 100);
  }
  EXPECT_EQ(budget.in_use(), 60);
  *a = ImageMemoryBudget::Reservation();
  EXPECT_EQ(budget.in_use(), 0);
}

TEST(DecodeImageToRgbTest, MemoryBudgetIsReservedFromTheHeaderAndReturned) {
  // A few hundred bytes of GIF with a 3000 x 3000 screen: 9 million pixels of canvas, as in the
  // review's 799-byte GIF with a 5792 x 5792 screen.
  GifSpec spec{.screen_width = 3000, .screen_height = 3000, .width = 1, .height = 1};
  spec.palette = kPalette;
  spec.stored_rows = {{1}};
  const std::string gif = EncodeGif(spec);
  ASSERT_LT(gif.size(), 1000u);
  const int64_t peak = PeakImageBytes(3000, 3000);
  auto budget = std::make_shared<ImageMemoryBudget>(peak);
  ImageDecodeLimits limits{.memory_budget = budget};
  {
    // Another request holds part of the budget: this image does not fit now.
    absl::StatusOr<ImageMemoryBudget::Reservation> other = budget->Reserve(1);
    ASSERT_TRUE(other.ok());
    const absl::StatusOr<cv::Mat> refused = DecodeImageToRgb(gif, limits);
    ExpectExhausted(refused);
    EXPECT_THAT(refused.status().message(), HasSubstr("retry later"));
  }
  // Alone, it fits; afterwards the budget is whole again.
  absl::StatusOr<cv::Mat> decoded = DecodeImageToRgb(gif, limits);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->cols, 3000);
  EXPECT_EQ(budget->in_use(), 0);
}

TEST(DecodeImageToRgbTest, OversizedGifFrameOnASmallScreenIsRefused) {
  GifSpec spec{.screen_width = 2, .screen_height = 2, .width = 2, .height = 2};
  spec.palette = kPalette;
  spec.stored_rows = {{0, 1}, {1, 0}};
  std::string gif = EncodeGif(spec);
  const size_t descriptor = gif.find('\x2C');  // after the 13-byte header and 12-byte palette
  ASSERT_EQ(descriptor, 13u + 12u);
  gif.replace(descriptor + 5, 4, "\x60\xEA\x60\xEA");  // frame 60000 x 60000
  ExpectExhausted(DecodeImageToRgb(gif));
}

TEST(DecodeImageToRgbTest, LimitsAreConfigurable) {
  const std::string png = Encode(".png", MakeTestImage(20, 10).bgr);
  EXPECT_TRUE(DecodeImageToRgb(png, {.max_pixels = 200}).ok());
  ExpectExhausted(DecodeImageToRgb(png, {.max_pixels = 199}));
  ExpectExhausted(DecodeImageToRgb(png, {.max_side = 19}));
  ExpectExhausted(DecodeImageToRgb(png, {.max_encoded_bytes = 10}));
}

TEST(DecodeImageToRgbTest, ZeroSizedHeaderIsInvalid) {
  ExpectInvalid(DecodeImageToRgb(WithPngSize(Encode(".png", MakeTestImage(4, 4).bgr), 0, 4)),
                "size 0x4");
}

TEST(DecodeImageToRgbTest, MutatedFilesNeverCrash) {
  // Random byte damage and truncation in every format: each decode succeeds within the limits or
  // fails cleanly (run under --config=asan to check memory safety too).
  const TestImage image = MakeTestImage(40, 30);
  GifSpec gif{.screen_width = 40,
              .screen_height = 30,
              .width = 40,
              .height = 30,
              .interlace = true,
              .transparent = 1};
  gif.palette = kPalette;
  for (int y = 0; y < 30; ++y) {
    std::vector<GifPixelType> row;
    for (int x = 0; x < 40; ++x) row.push_back(static_cast<GifPixelType>((x * y) % 4));
    gif.stored_rows.push_back(row);
  }
  const ImageDecodeLimits limits{.max_pixels = 1 << 16, .max_side = 1 << 10};
  std::mt19937 random(20261125);
  for (const std::string& seed :
       {Encode(".png", image.bgr), Encode(".jpg", image.bgr), Encode(".bmp", image.bgr),
        Encode(".webp", image.bgr, {cv::IMWRITE_WEBP_QUALITY, 101}),
        Encode(".webp", image.bgr, {cv::IMWRITE_WEBP_QUALITY, 50}), EncodeGif(gif)}) {
    for (int trial = 0; trial < 300; ++trial) {
      std::string bytes = seed;
      for (int flips = 1 + random() % 8; flips > 0; --flips) {
        bytes[random() % bytes.size()] = static_cast<char>(random());
      }
      if (random() % 4 == 0) bytes.resize(1 + random() % bytes.size());
      const absl::StatusOr<cv::Mat> result = DecodeImageToRgb(bytes, limits);
      if (result.ok()) {
        EXPECT_EQ(result->type(), CV_8UC3);
        EXPECT_LE(result->total(), size_t{1} << 16);
      } else {
        EXPECT_TRUE(result.status().code() == absl::StatusCode::kInvalidArgument ||
                    result.status().code() == absl::StatusCode::kResourceExhausted)
            << result.status();
      }
    }
  }
}

}  // namespace
}  // namespace pixtral
