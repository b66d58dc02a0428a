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

uint64_t Load64(const unsigned char* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  return word;
}

uint64_t RotateLeft(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// The bulk of a long input: Hasher's Add is one long dependency chain (two multiplies a word),
// about 1.5 GB/s. Here four lanes take a word each of a 32-byte stripe, and each lane keeps two
// accumulators (one per half of the key, with their own constants) updated by an
// xxHash64-style round, so eight short chains run side by side. Every lane and the length
// still go through Hasher at the end, so every byte reaches both halves of the key.
constexpr size_t kLanes = 4;
constexpr size_t kStripeBytes = 8 * kLanes;

struct Lanes {
  uint64_t hi[kLanes] = {0x60ea27eeadc0b5d6ULL, 0x82efa98ec4e6c89dULL, 0x452821e638d01377ULL,
                         0xbe5466cf34e90c6cULL};
  uint64_t lo[kLanes] = {0xc0ac29b7c97c50ddULL, 0x3f84d5b5b5470917ULL, 0x9216d5d98979fb1bULL,
                         0xd1310ba698dfb5acULL};

  void Add(const unsigned char* stripe) {
    for (size_t l = 0; l < kLanes; ++l) {
      const uint64_t word = Load64(stripe + 8 * l);
      hi[l] = RotateLeft(hi[l] + word * 0xc2b2ae3d27d4eb4fULL, 31) * 0x9e3779b185ebca87ULL;
      lo[l] = RotateLeft(lo[l] ^ (word * 0x165667b19e3779f9ULL), 27) * 0x85ebca77c2b2ae63ULL;
    }
  }
  void MergeInto(Hasher& h) const {
    for (size_t l = 0; l < kLanes; ++l) {
      h.Add(hi[l]);
      h.Add(lo[l]);
    }
  }
};

}  // namespace

BlockKey HashBytes(const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  Hasher h;
  size_t i = 0;
  if (size >= kStripeBytes) {
    Lanes lanes;
    for (; i + kStripeBytes <= size; i += kStripeBytes) lanes.Add(bytes + i);
    lanes.MergeInto(h);
  }
  for (; i + 8 <= size; i += 8) h.Add(Load64(bytes + i));
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
