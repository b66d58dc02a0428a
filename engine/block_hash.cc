#include "engine/block_hash.h"

#include <cstring>

namespace pixtral {
namespace {

// SplitMix64's finalizer: a cheap bijective mix with full avalanche.
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Two independently seeded streams over 64-bit words make a 128-bit hash.
struct Hasher {
  uint64_t hi = 0x9e3779b97f4a7c15ULL;
  uint64_t lo = 0xd1b54a32d192ed03ULL;

  void Add(uint64_t word) {
    hi = Mix(hi ^ word) + 0x632be59bd9b4e019ULL;
    lo = Mix(lo + word * 0xff51afd7ed558ccdULL) ^ 0xc4ceb9fe1a85ec53ULL;
  }
  BlockKey Key() const { return {Mix(hi), Mix(lo ^ hi)}; }
};

constexpr uint64_t kImageFlag = uint64_t{1} << 63;

}  // namespace

BlockKey HashBytes(const void* data, size_t size) {
  Hasher h;
  const auto* bytes = static_cast<const unsigned char*>(data);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    h.Add(word);
  }
  uint64_t tail = 0;
  std::memcpy(&tail, bytes + i, size - i);
  h.Add(tail);
  h.Add(size);
  return h.Key();
}

uint64_t ImageRowKey(const BlockKey& image, int64_t row) {
  Hasher h;
  h.Add(image.hi);
  h.Add(image.lo);
  h.Add(static_cast<uint64_t>(row));
  return h.Key().lo | kImageFlag;
}

void ExtendBlockKeys(absl::Span<const uint64_t> keys, int block_size,
                     std::vector<BlockKey>& blocks) {
  const size_t full = keys.size() / block_size;
  for (size_t b = blocks.size(); b < full; ++b) {
    Hasher h;
    if (b > 0) {
      h.Add(blocks[b - 1].hi);
      h.Add(blocks[b - 1].lo);
    }
    for (int i = 0; i < block_size; ++i) h.Add(keys[b * block_size + i]);
    blocks.push_back(h.Key());
  }
}

}  // namespace pixtral
