// Reading a whole file in a test: the test data, or what the code under test wrote.
//
//   const std::string params = ReadFileOrFail(dir + "/params.json");
#ifndef PIXTRAL_COMMON_TESTING_FILES_H_
#define PIXTRAL_COMMON_TESTING_FILES_H_

#include <string>

namespace pixtral {

// The bytes of the file at `path`; a failure of the running test and "" if it cannot be read.
std::string ReadFileOrFail(const std::string& path);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_TESTING_FILES_H_
