// The main() of fuzz targets outside --config=fuzz: runs LLVMFuzzerTestOneInput once on each
// file named on the command line (the corpus), as libFuzzer itself does when given files.
// A crash or sanitizer report fails the run; so does a target returning non-zero.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) __attribute__((weak));

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  int replayed = 0;
  for (int i = 1; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::cerr << "cannot read " << argv[i] << "\n";
      return 1;
    }
    std::stringstream bytes;
    bytes << in.rdbuf();
    const std::string input = bytes.str();
    if (LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size()) != 0) {
      std::cerr << argv[i] << ": the target returned non-zero\n";
      return 1;
    }
    ++replayed;
  }
  std::cerr << "replayed " << replayed << " inputs\n";
  return replayed > 0 ? 0 : 1;
}
