// The paged KV cache: fixed-size blocks of key/value slots shared by all sequences.
//
// Each sequence owns a block table, the list of blocks that hold its positions in order; position
// p lives in block table[p / block_size] at slot p % block_size. Blocks are reserved as a
// sequence grows and return to the pool when it finishes or is cancelled, so a long prompt never
// fragments memory and a finished one frees it at once.
//
// Blocks are reference-counted so that several tables can share one: a full block whose content
// is known (its BlockKey, a hash of everything that determined its keys and values) can be
// published, and a later sequence with the same prefix shares it instead of recomputing it (the
// prefix cache). A published block whose last reference goes stays cached, evictable: Reserve
// takes never-cached free blocks first, then evicts the least recently released cached ones.
//
//   PIXTRAL_ASSIGN_OR_RETURN(auto cache, PagedKvCache::Create(backend, layout));
//   std::vector<int32_t> table;
//   PIXTRAL_RETURN_IF_ERROR(cache->Reserve(/*num_positions=*/40, table));  // 3 blocks of 16
//   ... Backend::PagedAttention(..., cache->keys(layer), cache->values(layer), ...)
//   cache->Publish(table[0], key);      // block 0 is full: later prompts may share it
//   cache->Free(table);                 // block 0 stays cached until evicted
//   if (int32_t b = cache->Find(key); b >= 0) cache->Share(b, other_table);
#ifndef PIXTRAL_DECODER_KV_CACHE_H_
#define PIXTRAL_DECODER_KV_CACHE_H_

#include <cstdint>
#include <list>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace pixtral {

struct KvCacheLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;   // positions per block
  int num_blocks = 256;  // blocks in the whole cache, shared by all sequences
};

// What a full block holds, as a 128-bit hash (engine/block_hash.h computes it as a chain over the
// prefix's tokens and image contents). Two blocks with the same key hold the same keys and values.
struct BlockKey {
  uint64_t hi = 0;
  uint64_t lo = 0;

  friend bool operator==(const BlockKey& a, const BlockKey& b) {
    return a.hi == b.hi && a.lo == b.lo;
  }
  template <typename H>
  friend H AbslHashValue(H h, const BlockKey& k) {
    return H::combine(std::move(h), k.hi, k.lo);
  }
};

class PagedKvCache {
 public:
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(kernels::Backend& backend,
                                                              const KvCacheLayout& layout);

  const KvCacheLayout& layout() const { return layout_; }
  // Blocks Reserve can hand out: never-cached free blocks plus evictable cached ones.
  int num_free_blocks() const { return static_cast<int>(free_.size() + evictable_.size()); }
  // Blocks held by at least one table. 0 once every sequence is released.
  int num_used_blocks() const { return used_; }
  // Published blocks still in the index (in use or evictable).
  int num_cached_blocks() const { return static_cast<int>(index_.size()); }
  int64_t num_evictions() const { return evictions_; }
  // Positions one sequence could ever hold.
  int64_t capacity() const { return int64_t{layout_.num_blocks} * layout_.block_size; }

  // Appends fresh blocks (reference count 1) to `table` until it covers `num_positions`
  // positions. If there are not enough, ResourceExhausted and `table` is unchanged.
  absl::Status Reserve(int64_t num_positions, std::vector<int32_t>& table);
  // Drops the table's reference to each of its blocks and clears it. A block nobody holds any
  // more returns to the pool: as evictable if it was published, else as free.
  void Free(std::vector<int32_t>& table);

  // The prefix cache. Find: the published block with `key`, or -1. Share: appends `block` (a
  // published block, in use or evictable) to `table` with one more reference. Publish: records
  // that `block` (held by the caller, full) holds `key`; a no-op if the block is already
  // published or another block already holds that key.
  int32_t Find(const BlockKey& key) const;
  void Share(int32_t block, std::vector<int32_t>& table);
  void Publish(int32_t block, const BlockKey& key);

  // [num_blocks, block_size, num_kv_heads, head_dim] in the backend's KvCacheDType.
  const kernels::Tensor& keys(int layer) const { return keys_[layer]; }
  const kernels::Tensor& values(int layer) const { return values_[layer]; }

 private:
  struct BlockState {
    int refs = 0;
    bool published = false;
    BlockKey key;
    std::list<int32_t>::iterator lru;  // valid while evictable (published, refs == 0)
  };

  explicit PagedKvCache(const KvCacheLayout& layout) : layout_(layout) {}
  // Takes one block for a new table entry: a free one, else the least recently used evictable.
  int32_t TakeBlock();

  KvCacheLayout layout_;
  std::vector<int32_t> free_;       // a stack: the most recently freed block is reused first
  std::list<int32_t> evictable_;    // published, unreferenced; front = least recently released
  std::vector<BlockState> blocks_;  // by block id
  absl::flat_hash_map<BlockKey, int32_t> index_;
  int used_ = 0;
  int64_t evictions_ = 0;
  std::vector<kernels::Tensor> keys_, values_;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_KV_CACHE_H_
