#include "common/testing/files.h"

#include <fstream>
#include <string>

#include "gtest/gtest-spi.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

TEST(ReadFileOrFailTest, ReadsEveryByte) {
  const std::string path = testing::TempDir() + "/bytes";
  const std::string bytes("a\0b\r\n\xff", 6);
  std::ofstream(path, std::ios::binary) << bytes;
  EXPECT_EQ(ReadFileOrFail(path), bytes);
}

TEST(ReadFileOrFailTest, AnEmptyFileIsEmpty) {
  const std::string path = testing::TempDir() + "/empty";
  std::ofstream(path, std::ios::binary).close();
  EXPECT_EQ(ReadFileOrFail(path), "");
}

TEST(ReadFileOrFailTest, AMissingFileFailsTheTest) {
  EXPECT_NONFATAL_FAILURE(EXPECT_EQ(ReadFileOrFail("/nonexistent/file"), ""), "/nonexistent/file");
}

}  // namespace
}  // namespace pixtral
