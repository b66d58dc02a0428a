#include "services/common/model_fingerprint.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace pixtral {
namespace {

// Safetensors headers of real checkpoints are tens of kilobytes; anything near this is corrupt.
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

uint64_t Fnv1a(absl::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

}  // namespace

absl::StatusOr<std::string> ModelFingerprint(const std::string& dir) {
  const std::filesystem::path folder(dir);
  std::ifstream params(folder / "params.json", std::ios::binary);
  if (!params) return absl::NotFoundError(absl::StrFormat("no params.json in %s", dir));
  const std::string params_bytes((std::istreambuf_iterator<char>(params)),
                                 std::istreambuf_iterator<char>());
  std::string weights = "none";
  std::ifstream safetensors(folder / "consolidated.safetensors", std::ios::binary);
  if (safetensors) {
    unsigned char size_bytes[8];
    if (!safetensors.read(reinterpret_cast<char*>(size_bytes), 8)) {
      return absl::InvalidArgumentError("consolidated.safetensors is shorter than its header");
    }
    uint64_t size = 0;
    for (int i = 7; i >= 0; --i) size = (size << 8) | size_bytes[i];  // little-endian
    if (size == 0 || size > kMaxHeaderBytes) {
      return absl::InvalidArgumentError("consolidated.safetensors has an implausible header size");
    }
    std::string header(size, '\0');
    if (!safetensors.read(header.data(), static_cast<std::streamsize>(size))) {
      return absl::InvalidArgumentError("consolidated.safetensors is shorter than its header");
    }
    weights = absl::StrFormat("%016x", Fnv1a(header));
  }
  return absl::StrFormat("params=%016x weights=%s", Fnv1a(params_bytes), weights);
}

bool SameModel(absl::string_view a, absl::string_view b) {
  const std::pair<absl::string_view, absl::string_view> x = absl::StrSplit(a, ' ');
  const std::pair<absl::string_view, absl::string_view> y = absl::StrSplit(b, ' ');
  if (x.first != y.first) return false;
  return x.second == y.second || x.second == "weights=none" || y.second == "weights=none";
}

}  // namespace pixtral
