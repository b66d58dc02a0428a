// The paged KV cache: fixed-size blocks of key/value slots shared by all sequences.
//
// Each sequence owns a block table, the list of blocks that hold its positions in order; position
// p lives in block table[p / block_size] at slot p % block_size. Blocks are reserved before a
// step writes to them and all return to the free list when the sequence finishes or is cancelled,
// so a long prompt never fragments memory and a finished one frees it at once.
//
//   PIXTRAL_ASSIGN_OR_RETURN(auto cache, PagedKvCache::Create(backend, layout));
//   std::vector<int32_t> table;
//   PIXTRAL_RETURN_IF_ERROR(cache->Reserve(/*num_positions=*/40, table));  // 3 blocks of 16
//   ... Backend::PagedAttention(..., cache->keys(layer), cache->values(layer), ...)
//   cache->Free(table);
#ifndef PIXTRAL_DECODER_KV_CACHE_H_
#define PIXTRAL_DECODER_KV_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

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

class PagedKvCache {
 public:
  static absl::StatusOr<std::unique_ptr<PagedKvCache>> Create(kernels::Backend& backend,
                                                              const KvCacheLayout& layout);

  const KvCacheLayout& layout() const { return layout_; }
  int num_free_blocks() const { return static_cast<int>(free_.size()); }
  // Positions one sequence could ever hold.
  int64_t capacity() const { return int64_t{layout_.num_blocks} * layout_.block_size; }

  // Appends free blocks to `table` until it covers `num_positions` positions. If there are not
  // enough, ResourceExhausted and `table` is unchanged.
  absl::Status Reserve(int64_t num_positions, std::vector<int32_t>& table);
  // Returns every block of `table` to the free list and clears it.
  void Free(std::vector<int32_t>& table);

  // [num_blocks, block_size, num_kv_heads, head_dim] in the backend's KvCacheDType.
  const kernels::Tensor& keys(int layer) const { return keys_[layer]; }
  const kernels::Tensor& values(int layer) const { return values_[layer]; }

 private:
  explicit PagedKvCache(const KvCacheLayout& layout) : layout_(layout) {}

  KvCacheLayout layout_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<kernels::Tensor> keys_, values_;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_KV_CACHE_H_
