#include "common/image_decode.h"

#include <gif_lib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "opencv2/imgcodecs.hpp"
#include "opencv2/imgproc.hpp"

namespace pixtral {
namespace {

constexpr int kMaxJpegScans = 500;
constexpr int kPngColorTypeGray = 0;
constexpr int kPngColorTypeRgb = 2;

// ReadImageHeader's result plus what decoding needs to know from the header.
struct HeaderDetails {
  ImageHeader header;
  int png_color_type = -1;
  int png_gray_key = -1;        // an 8-bit gray PNG's transparent value (tRNS), if any
  size_t jpeg_scan_offset = 0;  // first byte after the first SOS marker
};

uint32_t Be16(const uint8_t* p) { return (uint32_t{p[0]} << 8) | p[1]; }
uint32_t Be32(const uint8_t* p) { return (Be16(p) << 16) | Be16(p + 2); }
uint32_t Le16(const uint8_t* p) { return uint32_t{p[0]} | (uint32_t{p[1]} << 8); }
uint32_t Le24(const uint8_t* p) { return Le16(p) | (uint32_t{p[2]} << 16); }
uint32_t Le32(const uint8_t* p) { return Le16(p) | (Le16(p + 2) << 16); }

absl::Status Truncated(absl::string_view format) {
  return absl::InvalidArgumentError(absl::StrCat(format, " image is truncated"));
}

// Accepts header dimensions as the unsigned numbers the formats store.
absl::StatusOr<HeaderDetails> Dimensions(ImageFormat format, uint64_t width, uint64_t height) {
  if (width == 0 || height == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(ImageFormatName(format), " header gives size ", width, "x", height));
  }
  // Anything this large fails the limits anyway; clamping keeps the numbers in int.
  constexpr uint64_t kCap = uint64_t{1} << 30;
  HeaderDetails details;
  details.header = {format, static_cast<int>(std::min(width, kCap)),
                    static_cast<int>(std::min(height, kCap))};
  return details;
}

absl::StatusOr<HeaderDetails> ReadPngHeader(const uint8_t* p, size_t n) {
  // Signature, then the IHDR chunk: length, "IHDR", width, height, depth, color type.
  if (n < 33) return Truncated("PNG");
  if (std::memcmp(p + 12, "IHDR", 4) != 0) {
    return absl::InvalidArgumentError("PNG does not start with an IHDR chunk");
  }
  absl::StatusOr<HeaderDetails> details = Dimensions(ImageFormat::kPng, Be32(p + 16), Be32(p + 20));
  if (!details.ok()) return details;
  details->png_color_type = p[25];
  if (p[25] == kPngColorTypeGray && p[24] == 8) {
    // Chunks (length, type, data, CRC) up to the first IDAT; tRNS must come before it.
    for (uint64_t pos = 8; pos + 8 <= n;) {
      const uint32_t length = Be32(p + pos);
      if (std::memcmp(p + pos + 4, "IDAT", 4) == 0) break;
      if (std::memcmp(p + pos + 4, "tRNS", 4) == 0 && length == 2 && pos + 10 <= n) {
        details->png_gray_key = static_cast<int>(Be16(p + pos + 8));
      }
      pos += uint64_t{12} + length;
    }
  }
  return details;
}

bool IsJpegFrameMarker(uint8_t marker) {
  // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

absl::StatusOr<HeaderDetails> ReadJpegHeader(const uint8_t* p, size_t n) {
  absl::StatusOr<HeaderDetails> details = absl::InvalidArgumentError("JPEG has no frame header");
  bool have_frame = false;
  size_t pos = 2;
  while (true) {
    if (pos >= n) return Truncated("JPEG");
    if (p[pos] != 0xFF) return absl::InvalidArgumentError("JPEG marker expected");
    while (pos < n && p[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= n) return Truncated("JPEG");
    const uint8_t marker = p[pos++];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;  // no length field
    if (marker == 0xD9) return absl::InvalidArgumentError("JPEG ends before its first scan");
    if (marker == 0xDA) {
      if (!have_frame) return absl::InvalidArgumentError("JPEG scan before its frame header");
      details->jpeg_scan_offset = pos;
      return details;
    }
    if (pos + 2 > n) return Truncated("JPEG");
    const size_t length = Be16(p + pos);
    if (length < 2) return absl::InvalidArgumentError("JPEG segment length is invalid");
    if (IsJpegFrameMarker(marker) && !have_frame) {
      if (length < 8 || pos + 7 > n) return Truncated("JPEG");
      details = Dimensions(ImageFormat::kJpeg, Be16(p + pos + 5), Be16(p + pos + 3));
      if (!details.ok()) return details.status();
      have_frame = true;
    }
    pos += length;
  }
}

absl::StatusOr<HeaderDetails> ReadWebpHeader(const uint8_t* p, size_t n) {
  // RIFF header (12 bytes), first chunk's FourCC and size (8 bytes), then its payload.
  if (n < 30) return Truncated("WebP");
  const uint8_t* chunk = p + 20;
  if (std::memcmp(p + 12, "VP8 ", 4) == 0) {
    if (chunk[3] != 0x9D || chunk[4] != 0x01 || chunk[5] != 0x2A) {
      return absl::InvalidArgumentError("WebP lossy frame has a bad start code");
    }
    return Dimensions(ImageFormat::kWebp, Le16(chunk + 6) & 0x3FFF, Le16(chunk + 8) & 0x3FFF);
  }
  if (std::memcmp(p + 12, "VP8L", 4) == 0) {
    if (chunk[0] != 0x2F) return absl::InvalidArgumentError("WebP lossless signature missing");
    const uint32_t bits = Le32(chunk + 1);
    return Dimensions(ImageFormat::kWebp, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1);
  }
  if (std::memcmp(p + 12, "VP8X", 4) == 0) {
    return Dimensions(ImageFormat::kWebp, Le24(chunk + 4) + 1, Le24(chunk + 7) + 1);
  }
  return absl::InvalidArgumentError("WebP has an unknown first chunk");
}

absl::StatusOr<HeaderDetails> ReadGifHeader(const uint8_t* p, size_t n) {
  if (n < 13) return Truncated("GIF");
  return Dimensions(ImageFormat::kGif, Le16(p + 6), Le16(p + 8));
}

absl::StatusOr<HeaderDetails> ReadBmpHeader(const uint8_t* p, size_t n) {
  // 14-byte file header, then an info header whose size tells its version.
  if (n < 26) return Truncated("BMP");
  const uint32_t info_size = Le32(p + 14);
  if (info_size == 12) return Dimensions(ImageFormat::kBmp, Le16(p + 18), Le16(p + 20));
  if (info_size < 40) return absl::InvalidArgumentError("BMP info header is unsupported");
  const int64_t width = static_cast<int32_t>(Le32(p + 18));
  const int64_t height = static_cast<int32_t>(Le32(p + 22));  // negative: rows top-down
  if (width <= 0) return absl::InvalidArgumentError("BMP width is not positive");
  return Dimensions(ImageFormat::kBmp, width, height < 0 ? -height : height);
}

absl::StatusOr<HeaderDetails> ReadHeaderDetails(absl::string_view bytes) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  if (n == 0) return absl::InvalidArgumentError("image data is empty");
  auto starts_with = [&](absl::string_view magic) {
    return n >= magic.size() && std::memcmp(p, magic.data(), magic.size()) == 0;
  };
  if (starts_with("\x89PNG\r\n\x1a\n")) return ReadPngHeader(p, n);
  if (starts_with("\xFF\xD8\xFF")) return ReadJpegHeader(p, n);
  if (starts_with("RIFF") && n >= 12 && std::memcmp(p + 8, "WEBP", 4) == 0) {
    return ReadWebpHeader(p, n);
  }
  if (starts_with("GIF87a") || starts_with("GIF89a")) return ReadGifHeader(p, n);
  if (starts_with("BM")) return ReadBmpHeader(p, n);
  return absl::InvalidArgumentError(
      "image data is not PNG, JPEG, WebP, GIF or BMP (unrecognized signature)");
}

absl::Status CheckLimits(const char* what, int width, int height, const ImageDecodeLimits& limits) {
  const int64_t pixels = int64_t{width} * height;
  if (width > limits.max_side || height > limits.max_side || pixels > limits.max_pixels) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, " is ", width, "x", height, " pixels; the limit is ", limits.max_side,
                     " pixels a side and ", limits.max_pixels, " in all"));
  }
  return absl::OkStatus();
}

// libjpeg fills a truncated scan with gray and only warns, so insist on the end-of-image marker.
// And a progressive JPEG of thousands of tiny scans takes libjpeg minutes to decode, so cap the
// scans as libjpeg-turbo's TJFLAG_LIMITSCANS does. Entropy-coded data escapes 0xFF bytes, so
// markers can be counted by searching.
absl::Status CheckJpegBody(absl::string_view bytes, const HeaderDetails& details,
                           const ImageDecodeLimits& limits) {
  if (bytes.find("\xFF\xD9", details.jpeg_scan_offset) == absl::string_view::npos) {
    return Truncated("JPEG");
  }
  int scans = 1;
  for (size_t at = bytes.find("\xFF\xDA", details.jpeg_scan_offset); at != absl::string_view::npos;
       at = bytes.find("\xFF\xDA", at + 2)) {
    if (++scans > kMaxJpegScans) {
      return absl::InvalidArgumentError(
          absl::StrCat("JPEG has more than ", kMaxJpegScans, " scans"));
    }
  }
  const int64_t pixels = int64_t{details.header.width} * details.header.height;
  if (scans * pixels > limits.max_jpeg_scan_pixels) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "JPEG has ", scans, " scans of ", details.header.width, "x", details.header.height,
        " pixels: decoding it would cost more than this server allows for one image (",
        limits.max_jpeg_scan_pixels, " scan-pixels)"));
  }
  return absl::OkStatus();
}

// --- GIF, through giflib (OpenCV 4.6 has no GIF decoder) ---

struct GifSource {
  const uint8_t* data;
  size_t size;
  size_t pos;
};

int ReadGifBytes(GifFileType* gif, GifByteType* out, int length) {
  auto* source = static_cast<GifSource*>(gif->UserData);
  const size_t count = std::min<size_t>(std::max(length, 0), source->size - source->pos);
  std::memcpy(out, source->data + source->pos, count);
  source->pos += count;
  return static_cast<int>(count);
}

struct GifCloser {
  void operator()(GifFileType* gif) const {
    int error = 0;
    DGifCloseFile(gif, &error);
  }
};

absl::Status GifError(int code) {
  const char* message = GifErrorString(code);
  return absl::InvalidArgumentError(
      absl::StrCat("GIF is corrupt or truncated: ", message != nullptr ? message : "unknown"));
}

// Decodes the first frame onto the logical screen as BGRA, as PIL does.
absl::StatusOr<cv::Mat> DecodeGifFirstFrame(absl::string_view bytes,
                                            const ImageDecodeLimits& limits) {
  GifSource source{reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), 0};
  int error = 0;
  std::unique_ptr<GifFileType, GifCloser> gif(DGifOpen(&source, ReadGifBytes, &error));
  if (gif == nullptr) return GifError(error);

  int transparent = -1;
  while (true) {
    GifRecordType type;
    if (DGifGetRecordType(gif.get(), &type) == GIF_ERROR) return GifError(gif->Error);
    if (type == TERMINATE_RECORD_TYPE) return absl::InvalidArgumentError("GIF has no image");
    if (type == IMAGE_DESC_RECORD_TYPE) break;
    if (type != EXTENSION_RECORD_TYPE) continue;
    int code = 0;
    GifByteType* block = nullptr;
    if (DGifGetExtension(gif.get(), &code, &block) == GIF_ERROR) return GifError(gif->Error);
    if (code == GRAPHICS_EXT_FUNC_CODE && block != nullptr && block[0] >= 4) {
      GraphicsControlBlock control;
      DGifExtensionToGCB(block[0], block + 1, &control);
      transparent = control.TransparentColor;
    }
    while (block != nullptr) {
      if (DGifGetExtensionNext(gif.get(), &block) == GIF_ERROR) return GifError(gif->Error);
    }
  }
  if (DGifGetImageDesc(gif.get()) == GIF_ERROR) return GifError(gif->Error);
  const GifImageDesc& frame = gif->Image;
  if (frame.Width <= 0 || frame.Height <= 0) {
    return absl::InvalidArgumentError("GIF frame has no pixels");
  }
  // The frame's LZW data is decoded in full even where it lies off the screen.
  if (absl::Status status = CheckLimits("GIF frame", frame.Width, frame.Height, limits);
      !status.ok()) {
    return status;
  }
  // Without any color table PIL reads the indices as gray levels.
  const ColorMapObject* colors = frame.ColorMap != nullptr ? frame.ColorMap : gif->SColorMap;
  auto bgra = [&](int index) {
    if (index == transparent) return cv::Vec4b(255, 255, 255, 0);
    if (colors == nullptr) return cv::Vec4b(index, index, index, 255);
    if (index >= colors->ColorCount) return cv::Vec4b(0, 0, 0, 255);
    const GifColorType& c = colors->Colors[index];
    return cv::Vec4b(c.Blue, c.Green, c.Red, 255);
  };
  // PIL starts the first frame's canvas at index 0, or at the transparent index if there is one.
  cv::Mat image(gif->SHeight, gif->SWidth, CV_8UC4,
                cv::Scalar(bgra(transparent >= 0 ? transparent : 0)));

  // Interlaced frames store rows in four passes: every 8th from 0, every 8th from 4, every 4th
  // from 2, every 2nd from 1.
  std::vector<int> row_order;
  row_order.reserve(frame.Height);
  if (frame.Interlace) {
    for (const auto& [start, step] : {std::pair{0, 8}, {4, 8}, {2, 4}, {1, 2}}) {
      for (int row = start; row < frame.Height; row += step) row_order.push_back(row);
    }
  } else {
    for (int row = 0; row < frame.Height; ++row) row_order.push_back(row);
  }
  std::vector<GifPixelType> line(frame.Width);
  for (const int row : row_order) {
    if (DGifGetLine(gif.get(), line.data(), frame.Width) == GIF_ERROR) return GifError(gif->Error);
    const int y = frame.Top + row;
    if (y < 0 || y >= image.rows) continue;
    auto* out = image.ptr<cv::Vec4b>(y);
    for (int x = 0; x < frame.Width; ++x) {
      const int screen_x = frame.Left + x;
      if (screen_x >= 0 && screen_x < image.cols) out[screen_x] = bgra(line[x]);
    }
  }
  return image;
}

// --- conversion to RGB ---

// PIL's rounded division by 255 in Image.paste's blend.
inline uint8_t Div255(uint32_t value) {
  value += 128;
  return static_cast<uint8_t>(((value >> 8) + value) >> 8);
}

cv::Mat CompositeBgraOnWhite(const cv::Mat& bgra) {
  cv::Mat rgb(bgra.rows, bgra.cols, CV_8UC3);
  for (int y = 0; y < bgra.rows; ++y) {
    const auto* in = bgra.ptr<cv::Vec4b>(y);
    auto* out = rgb.ptr<cv::Vec3b>(y);
    for (int x = 0; x < bgra.cols; ++x) {
      const uint32_t alpha = in[x][3];
      const uint32_t white = 255 * (255 - alpha);
      out[x] = cv::Vec3b(Div255(white + in[x][2] * alpha), Div255(white + in[x][1] * alpha),
                         Div255(white + in[x][0] * alpha));
    }
  }
  return rgb;
}

absl::StatusOr<cv::Mat> ToRgb(cv::Mat decoded, bool ignore_alpha) {
  if (decoded.depth() == CV_16U) {
    // PIL reads 16-bit samples as their high byte.
    cv::Mat narrow(decoded.rows, decoded.cols, CV_MAKETYPE(CV_8U, decoded.channels()));
    for (int y = 0; y < decoded.rows; ++y) {
      const auto* in = decoded.ptr<uint16_t>(y);
      auto* out = narrow.ptr<uint8_t>(y);
      for (int i = 0; i < decoded.cols * decoded.channels(); ++i) out[i] = in[i] >> 8;
    }
    decoded = narrow;
  }
  if (decoded.depth() != CV_8U) {
    return absl::InvalidArgumentError("image has an unsupported sample type");
  }
  cv::Mat rgb;
  switch (decoded.channels()) {
    case 1:
      cv::cvtColor(decoded, rgb, cv::COLOR_GRAY2RGB);
      return rgb;
    case 3:
      cv::cvtColor(decoded, rgb, cv::COLOR_BGR2RGB);
      return rgb;
    case 4:
      if (!ignore_alpha) return CompositeBgraOnWhite(decoded);
      cv::cvtColor(decoded, rgb, cv::COLOR_BGRA2RGB);
      return rgb;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("image has an unsupported channel count ", decoded.channels()));
  }
}

}  // namespace

ImageMemoryBudget::Reservation& ImageMemoryBudget::Reservation::operator=(
    Reservation&& other) noexcept {
  if (this != &other) {
    if (budget_ != nullptr) budget_->Release(bytes_);
    budget_ = other.budget_;
    bytes_ = other.bytes_;
    other.budget_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

ImageMemoryBudget::Reservation::~Reservation() {
  if (budget_ != nullptr) budget_->Release(bytes_);
}

absl::StatusOr<ImageMemoryBudget::Reservation> ImageMemoryBudget::Reserve(int64_t bytes) {
  absl::MutexLock lock(&mutex_);
  if (bytes > capacity_ - in_use_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the server is decoding as many images as its memory allows (an image this size needs ",
        bytes >> 20, " MiB); retry later or send a smaller image"));
  }
  in_use_ += bytes;
  Reservation reservation;
  reservation.budget_ = this;
  reservation.bytes_ = bytes;
  return reservation;
}

int64_t ImageMemoryBudget::in_use() const {
  absl::MutexLock lock(&mutex_);
  return in_use_;
}

void ImageMemoryBudget::Release(int64_t bytes) {
  absl::MutexLock lock(&mutex_);
  in_use_ -= bytes;
}

int64_t PeakImageBytes(int width, int height) {
  constexpr int64_t kBytesPerPixel = 4 + 3 + 12;
  // The preprocessed result: at most 1024 x 1024 float32 RGB for Pixtral, with room to spare.
  constexpr int64_t kResult = int64_t{16} << 20;
  return int64_t{width} * height * kBytesPerPixel + kResult;
}

absl::string_view ImageFormatName(ImageFormat format) {
  switch (format) {
    case ImageFormat::kPng:
      return "PNG";
    case ImageFormat::kJpeg:
      return "JPEG";
    case ImageFormat::kWebp:
      return "WebP";
    case ImageFormat::kGif:
      return "GIF";
    case ImageFormat::kBmp:
      return "BMP";
  }
  return "unknown";
}

absl::StatusOr<ImageHeader> ReadImageHeader(absl::string_view encoded_bytes) {
  absl::StatusOr<HeaderDetails> details = ReadHeaderDetails(encoded_bytes);
  if (!details.ok()) return details.status();
  return details->header;
}

namespace {

absl::StatusOr<HeaderDetails> CheckBeforeDecoding(absl::string_view encoded_bytes,
                                                  const ImageDecodeLimits& limits) {
  // cv::imdecode takes the buffer's length as an int.
  const int64_t max_bytes = std::min<int64_t>(limits.max_encoded_bytes, INT32_MAX);
  if (static_cast<int64_t>(encoded_bytes.size()) > max_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("encoded image is ", encoded_bytes.size(),
                                                     " bytes; the limit is ", max_bytes));
  }
  absl::StatusOr<HeaderDetails> details = ReadHeaderDetails(encoded_bytes);
  if (!details.ok()) return details.status();
  const ImageHeader& header = details->header;
  const std::string what = absl::StrCat(ImageFormatName(header.format), " image");
  if (absl::Status status = CheckLimits(what.c_str(), header.width, header.height, limits);
      !status.ok()) {
    return status;
  }
  if (header.format == ImageFormat::kJpeg) {
    if (absl::Status status = CheckJpegBody(encoded_bytes, *details, limits); !status.ok()) {
      return status;
    }
  }
  return details;
}

}  // namespace

absl::StatusOr<ImageHeader> CheckImageBeforeDecoding(absl::string_view encoded_bytes,
                                                     const ImageDecodeLimits& limits) {
  absl::StatusOr<HeaderDetails> details = CheckBeforeDecoding(encoded_bytes, limits);
  if (!details.ok()) return details.status();
  return details->header;
}

absl::StatusOr<cv::Mat> DecodeImageToRgb(absl::string_view encoded_bytes,
                                         const ImageDecodeLimits& limits) {
  absl::StatusOr<HeaderDetails> details = CheckBeforeDecoding(encoded_bytes, limits);
  if (!details.ok()) return details.status();
  const ImageHeader& header = details->header;
  const std::string what = absl::StrCat(ImageFormatName(header.format), " image");

  // Held until the decoded image is returned; PreprocessImage holds its own, larger, reservation
  // (and passes no budget here).
  ImageMemoryBudget::Reservation reservation;
  if (limits.memory_budget != nullptr) {
    absl::StatusOr<ImageMemoryBudget::Reservation> reserved =
        limits.memory_budget->Reserve(PeakImageBytes(header.width, header.height));
    if (!reserved.ok()) return reserved.status();
    reservation = *std::move(reserved);
  }

  cv::Mat decoded;
  if (header.format == ImageFormat::kGif) {
    absl::StatusOr<cv::Mat> gif = DecodeGifFirstFrame(encoded_bytes, limits);
    if (!gif.ok()) return gif.status();
    decoded = *std::move(gif);
  } else {
    const cv::Mat buffer(1, static_cast<int>(encoded_bytes.size()), CV_8U,
                         const_cast<char*>(encoded_bytes.data()));
    try {
      // UNCHANGED keeps alpha and, like PIL, ignores EXIF orientation.
      decoded = cv::imdecode(buffer, cv::IMREAD_UNCHANGED);
    } catch (const cv::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(what, " could not be decoded: ", e.what()));
    }
    if (decoded.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " could not be decoded (corrupt or truncated)"));
    }
  }
  if (decoded.cols != header.width || decoded.rows != header.height) {
    return absl::InvalidArgumentError(absl::StrCat(what, " decoded to ", decoded.cols, "x",
                                                   decoded.rows, " but its header says ",
                                                   header.width, "x", header.height));
  }
  // PIL turns an 8-bit gray PNG's color key transparent, which compositing makes white. OpenCV
  // ignores the key.
  if (details->png_gray_key >= 0 && decoded.type() == CV_8UC1) {
    decoded.setTo(255, decoded == details->png_gray_key);
  }
  // PIL keeps an RGB PNG with a tRNS color key in mode RGB, so mistral_common ignores the key.
  return ToRgb(std::move(decoded), details->png_color_type == kPngColorTypeRgb);
}

}  // namespace pixtral
