#include "common/safetensors.h"

#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "common/testing/files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kTinyWeights[] = "tests/data/pixtral-tiny/consolidated.safetensors";

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/" + name;
}

// A file image built by hand, independent of SafetensorsWriter, so tests can craft bad headers.
std::string FileImage(const std::string& header, const std::string& data) {
  std::string out;
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  return out + header + data;
}

// Two little tensors: "a" F32 [2] = {1.5, -2}, "b" U8 [3] = {7, 8, 9}.
std::string ValidImage() {
  const float a[2] = {1.5f, -2.0f};
  std::string data(reinterpret_cast<const char*>(a), sizeof(a));
  data += std::string("\x07\x08\x09", 3);
  return FileImage(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                   R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]},)"
                   R"("__metadata__":{"format":"pt"}})",
                   data);
}

absl::Status ParseError(const std::string& header, const std::string& data) {
  return SafetensorsFile::FromBytes(FileImage(header, data), "bad.safetensors").status();
}

TEST(SafetensorsTest, ReadsTheTinyModel) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(kTinyWeights);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 45u);

  const TensorView* embeddings = (*file)->Find("tok_embeddings.weight");
  ASSERT_NE(embeddings, nullptr);
  EXPECT_EQ(embeddings->dtype, DType::kBF16);
  EXPECT_THAT(embeddings->shape, ElementsAre(2048, 64));
  absl::StatusOr<absl::Span<const uint16_t>> bits = embeddings->As<uint16_t>();
  ASSERT_TRUE(bits.ok()) << bits.status();
  // Values read independently with Python's struct module.
  EXPECT_EQ((*bits)[0], 0xbf05);
  EXPECT_EQ((*bits)[2048 * 64 - 1], 0x401b);

  const TensorView* conv = (*file)->Find("vision_encoder.patch_conv.weight");
  ASSERT_NE(conv, nullptr);
  EXPECT_THAT(conv->shape, ElementsAre(64, 3, 16, 16));

  absl::StatusOr<std::vector<float>> norm = ToFloat32(*(*file)->Find("norm.weight"));
  ASSERT_TRUE(norm.ok());
  ASSERT_EQ(norm->size(), 64u);
  EXPECT_EQ((*norm)[0], 1.3359375f);
  EXPECT_EQ((*norm)[63], 0.6640625f);
  EXPECT_EQ((*ToFloat32(*(*file)->Find("vision_language_adapter.w_out.bias")))[5], 0.043212890625f);
  EXPECT_EQ((*file)->Find("no.such.tensor"), nullptr);
}

TEST(SafetensorsTest, ReadsValuesAndMetadata) {
  auto file = SafetensorsFile::FromBytes(ValidImage(), "valid");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_THAT(*ToFloat32(*(*file)->Find("a")), ElementsAre(1.5f, -2.0f));
  EXPECT_THAT(*ToInt64(*(*file)->Find("b")), ElementsAre(7, 8, 9));
  EXPECT_EQ((*file)->metadata().at("format"), "pt");
  EXPECT_FALSE(ToInt64(*(*file)->Find("a")).ok());
  EXPECT_FALSE(ToFloat32(*(*file)->Find("b")).ok());
  EXPECT_FALSE((*file)->Find("a")->As<uint16_t>().ok());  // wrong element size
}

TEST(SafetensorsTest, WriterOutputReadsBack) {
  const std::vector<uint16_t> bf16 = {FloatToBf16(0.5f), FloatToBf16(-3.0f), FloatToBf16(7.0f),
                                      FloatToBf16(1.0f)};
  const std::vector<int64_t> ids = {1, 10, 12, 13};
  const std::vector<float> empty;
  const std::string path = TempPath("written.safetensors");
  const TensorToWrite tensors[] = {
      {{"w", DType::kBF16, {2, 2}}, AsBytes(bf16)},
      {{"ids", DType::kI64, {4}}, AsBytes(ids)},
      {{"none", DType::kF32, {0, 3}}, AsBytes(empty)},
  };
  ASSERT_TRUE(WriteSafetensors(path, tensors, {{"producer", "test"}}).ok());

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_THAT((*file)->Find("w")->shape, ElementsAre(2, 2));
  EXPECT_THAT(*ToFloat32(*(*file)->Find("w")), ElementsAre(0.5f, -3.0f, 7.0f, 1.0f));
  EXPECT_THAT(*ToInt64(*(*file)->Find("ids")), ElementsAre(1, 10, 12, 13));
  EXPECT_EQ((*file)->Find("none")->num_elements(), 0);
  EXPECT_EQ((*file)->metadata().at("producer"), "test");
  // The data section starts 8-byte aligned, so typed views of the first tensor work.
  EXPECT_TRUE((*file)->Find("w")->As<uint16_t>().ok());
}

TEST(SafetensorsTest, WriterRejectsShortOrLongData) {
  const std::vector<float> three = {1, 2, 3};
  const std::string path = TempPath("short.safetensors");
  const TensorToWrite too_short[] = {{{"x", DType::kF32, {4}}, AsBytes(three)}};
  EXPECT_FALSE(WriteSafetensors(path, too_short).ok());
  std::ifstream left_behind(path);
  EXPECT_FALSE(left_behind.good()) << "a failed write must not leave a file under the final name";
  const TensorToWrite too_long[] = {{{"x", DType::kF32, {2}}, AsBytes(three)}};
  EXPECT_FALSE(WriteSafetensors(path, too_long).ok());
  const TensorToWrite duplicate[] = {{{"x", DType::kF32, {3}}, AsBytes(three)},
                                     {{"x", DType::kF32, {3}}, AsBytes(three)}};
  EXPECT_FALSE(WriteSafetensors(path, duplicate).ok());
}

TEST(SafetensorsTest, MissingFileNamesThePath) {
  absl::Status status = SafetensorsFile::Open("/nonexistent/model.safetensors").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.message(), HasSubstr("/nonexistent/model.safetensors"));
}

TEST(SafetensorsTest, EmptyFileIsAnError) {
  const std::string path = TempPath("empty.safetensors");
  std::ofstream(path).close();
  absl::Status status = SafetensorsFile::Open(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("too short"));
}

TEST(SafetensorsTest, EveryTruncationIsAnError) {
  const std::string image = ValidImage();
  for (size_t length = 0; length < image.size(); ++length) {
    EXPECT_FALSE(SafetensorsFile::FromBytes(image.substr(0, length), "cut").ok()) << length;
  }
}

TEST(SafetensorsTest, TruncatedRealFileNamesTheTensor) {
  std::string image = ReadFileOrFail(kTinyWeights);
  image.resize(image.size() - 1000);
  absl::Status status = SafetensorsFile::FromBytes(image, "cut.safetensors").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("cut.safetensors"));
  EXPECT_THAT(status.message(), HasSubstr("truncated"));
}

TEST(SafetensorsTest, HugeHeaderLengthIsAnError) {
  std::string image(8, '\xff');
  image += "{}";
  EXPECT_THAT(SafetensorsFile::FromBytes(image, "huge").status().message(), HasSubstr("limit"));
}

TEST(SafetensorsTest, MalformedHeadersAreErrors) {
  const std::string four(4, '\0');
  EXPECT_THAT(ParseError("{not json", "").message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(ParseError("[1,2]", "").message(), HasSubstr("not a JSON object"));
  EXPECT_THAT(ParseError(R"({"x":5})", "").message(), HasSubstr("not an object"));
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0'))
          .message(),
      HasSubstr("unsupported dtype"));
  EXPECT_THAT(ParseError(R"({"x":{"shape":[1],"data_offsets":[0,4]}})", four).message(),
              HasSubstr("dtype"));
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four).message(),
      HasSubstr("non-negative"));
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", four).message(),
      HasSubstr("non-negative"));
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", four).message(),
      HasSubstr("reversed"));
  EXPECT_THAT(ParseError(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", four).message(),
              HasSubstr("[begin, end]"));
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four).message(),
      HasSubstr("needs 8 bytes"));
  EXPECT_THAT(ParseError(R"({"__metadata__":{"k":1}})", "").message(), HasSubstr("not a string"));
}

TEST(SafetensorsTest, ShapeOverflowIsAnError) {
  // 2^32 * 2^32 elements would wrap a 64-bit count to 0 and pass a naive size check.
  absl::Status status = ParseError(
      R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", "");
  EXPECT_THAT(status.message(), HasSubstr("too large"));
}

TEST(SafetensorsTest, OffsetsPastTheDataAreErrors) {
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})", "abcd").message(),
      HasSubstr("truncated"));
  EXPECT_THAT(ParseError(R"({"x":{"dtype":"U8","shape":[0],"data_offsets":)"
                         R"([18446744073709551615,18446744073709551615]}})",
                         "")
                  .message(),
              HasSubstr("non-negative integers"));
}

TEST(SafetensorsTest, OverlapsGapsAndTrailingBytesAreErrors) {
  const std::string eight(8, '\0');
  EXPECT_THAT(ParseError(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                         R"("y":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                         eight)
                  .message(),
              HasSubstr("overlaps"));
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", eight).message(),
      HasSubstr("gap"));
  EXPECT_THAT(
      ParseError(R"({"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", eight).message(),
      HasSubstr("trailing"));
}

// Keeps the reads of fuzzed views from being optimized away.
unsigned read_sink = 0;

TEST(SafetensorsTest, RandomCorruptionNeverCrashes) {
  std::ifstream in(kTinyWeights, std::ios::binary);
  std::string header_part(8 + 4736, '\0');  // length prefix + the tiny model's header
  in.read(header_part.data(), header_part.size());
  const std::string image = ValidImage();
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string corrupt = trial % 2 ? image : header_part;
    const int flips = 1 + rng() % 4;
    for (int i = 0; i < flips; ++i) corrupt[rng() % corrupt.size()] = static_cast<char>(rng());
    auto file = SafetensorsFile::FromBytes(corrupt, "fuzz");
    if (file.ok()) {  // a harmless flip: every view must be readable (ASan checks the reads)
      for (const TensorView& t : (*file)->tensors()) {
        ASSERT_EQ(t.bytes.size(), static_cast<size_t>(t.num_elements()) * DTypeSize(t.dtype));
        unsigned sum = 0;
        for (uint8_t byte : t.bytes) sum += byte;
        read_sink += sum;
      }
    }
  }
}

TEST(SafetensorsCheckpointTest, ShardsOpenAsOne) {
  const std::vector<float> a = {1, 2};
  const std::vector<float> b = {3};
  const std::string first = TempPath("shard1.safetensors");
  const std::string second = TempPath("shard2.safetensors");
  const TensorToWrite one[] = {{{"a", DType::kF32, {2}}, AsBytes(a)}};
  const TensorToWrite two[] = {{{"b", DType::kF32, {1}}, AsBytes(b)}};
  ASSERT_TRUE(WriteSafetensors(first, one).ok());
  ASSERT_TRUE(WriteSafetensors(second, two).ok());
  auto checkpoint = SafetensorsCheckpoint::Open({first, second});
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ(checkpoint->tensors().size(), 2u);
  EXPECT_THAT(*ToFloat32(*checkpoint->Find("b")), ElementsAre(3.0f));

  absl::Status duplicate = SafetensorsCheckpoint::Open({first, first}).status();
  EXPECT_THAT(duplicate.message(), HasSubstr("in two files"));
  EXPECT_FALSE(SafetensorsCheckpoint::Open({}).ok());
}

}  // namespace
}  // namespace pixtral
