#include "common/testing/files.h"

#include <fstream>
#include <iterator>

#include "gtest/gtest.h"

namespace pixtral {

std::string ReadFileOrFail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace pixtral
