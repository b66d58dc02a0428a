#include "services/common/model_fingerprint.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

std::filesystem::path MakeFolder(const std::string& name, const std::string& params,
                                 const std::string* header) {
  const std::filesystem::path dir = std::filesystem::path(testing::TempDir()) / name;
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "params.json") << params;
  if (header != nullptr) {
    std::ofstream out(dir / "consolidated.safetensors", std::ios::binary);
    uint64_t size = header->size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((size >> (8 * i)) & 0xff));
    out << *header << std::string(64, '\x7f');  // weights after the header do not count
  }
  return dir;
}

TEST(ModelFingerprintTest, KnownValueOfFnv1a) {
  // FNV-1a 64 of "" is its offset basis; of "a" the published af63dc4c8601ec8c.
  const std::string header = "a";
  auto fingerprint = ModelFingerprint(MakeFolder("known", "", &header).string());
  ASSERT_TRUE(fingerprint.ok()) << fingerprint.status();
  EXPECT_EQ(*fingerprint, "params=cbf29ce484222325 weights=af63dc4c8601ec8c");
}

TEST(ModelFingerprintTest, SameFilesSameFingerprintOtherParamsOrHeaderDiffer) {
  const std::string header = R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})";
  const std::string other = R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]}})";
  auto a = ModelFingerprint(MakeFolder("a", R"({"dim": 64})", &header).string());
  auto b = ModelFingerprint(MakeFolder("b", R"({"dim": 64})", &header).string());
  auto c = ModelFingerprint(MakeFolder("c", R"({"dim": 65})", &header).string());
  auto d = ModelFingerprint(MakeFolder("d", R"({"dim": 64})", &other).string());
  auto no_weights = ModelFingerprint(MakeFolder("e", R"({"dim": 64})", nullptr).string());
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok() && no_weights.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_TRUE(SameModel(*a, *b));
  EXPECT_FALSE(SameModel(*a, *c));
  EXPECT_FALSE(SameModel(*a, *d));
  // A gateway's folder without weights matches on params alone.
  EXPECT_TRUE(SameModel(*no_weights, *a));
  EXPECT_FALSE(SameModel(*no_weights, *c));
}

TEST(ModelFingerprintTest, BadFoldersAreErrorsNotCrashes) {
  EXPECT_EQ(ModelFingerprint("/nonexistent").status().code(), absl::StatusCode::kNotFound);
  const std::string huge_claim = "";  // header size 0
  EXPECT_EQ(ModelFingerprint(MakeFolder("zero", "{}", &huge_claim).string()).status().code(),
            absl::StatusCode::kInvalidArgument);
  const std::filesystem::path dir = MakeFolder("short", "{}", nullptr);
  std::ofstream(dir / "consolidated.safetensors", std::ios::binary) << "\xff\xff\xff\xff";
  EXPECT_EQ(ModelFingerprint(dir.string()).status().code(), absl::StatusCode::kInvalidArgument);
  const std::filesystem::path lying = MakeFolder("lying", "{}", nullptr);
  {
    std::ofstream out(lying / "consolidated.safetensors", std::ios::binary);
    out.write("\x10\x00\x00\x00\x00\x00\x00\x00", 8);  // claims 16 bytes, has 3
    out << "abc";
  }
  EXPECT_EQ(ModelFingerprint(lying.string()).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pixtral
