// Content keys for the prefix cache.
//
// Every position of a sequence gets a 64-bit key that says what determined its keys and values:
// the token id for text and generated tokens, and for an [IMG] placeholder of the prompt a hash
// of the image content whose feature row fills it (flagged so that it never equals a token id:
// a generated [IMG] token is an ordinary token, embedded from the table). A full block's
// BlockKey chains the previous block's key with its positions' keys, so equal BlockKeys mean
// equal prefixes, not merely equal blocks.
//
//   std::vector<uint64_t> keys = ...;  // one per position
//   std::vector<BlockKey> blocks = ChainBlockKeys(keys, /*block_size=*/16);  // keys.size() / 16
#ifndef PIXTRAL_ENGINE_BLOCK_HASH_H_
#define PIXTRAL_ENGINE_BLOCK_HASH_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "decoder/kv_cache.h"

namespace pixtral {

// The key of a text or generated token.
inline uint64_t TokenKey(int32_t token) { return static_cast<uint32_t>(token); }

// 128-bit content hash of raw bytes (two independent 64-bit streams).
BlockKey HashBytes(const void* data, size_t size);

// The key of the `row`-th feature row of the image (or feature rows) with content hash `image`.
uint64_t ImageRowKey(const BlockKey& image, int64_t row);

// Extends `blocks` (the chain so far) with the keys of every further full block of `keys`.
void ExtendBlockKeys(absl::Span<const uint64_t> keys, int block_size,
                     std::vector<BlockKey>& blocks);

inline std::vector<BlockKey> ChainBlockKeys(absl::Span<const uint64_t> keys, int block_size) {
  std::vector<BlockKey> blocks;
  ExtendBlockKeys(keys, block_size, blocks);
  return blocks;
}

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_BLOCK_HASH_H_
