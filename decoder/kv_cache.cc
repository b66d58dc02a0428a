#include "decoder/kv_cache.h"

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace pixtral {

absl::StatusOr<std::unique_ptr<PagedKvCache>> PagedKvCache::Create(kernels::Backend& backend,
                                                                   const KvCacheLayout& layout) {
  if (layout.block_size <= 0 || layout.num_blocks <= 0 || layout.num_layers <= 0 ||
      layout.num_kv_heads <= 0 || layout.head_dim <= 0) {
    return absl::InvalidArgumentError("KV cache: every size must be positive");
  }
  std::unique_ptr<PagedKvCache> cache(new PagedKvCache(layout));
  const std::vector<int64_t> shape = {layout.num_blocks, layout.block_size, layout.num_kv_heads,
                                      layout.head_dim};
  for (int i = 0; i < layout.num_layers; ++i) {
    PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor k, backend.Alloc(backend.KvCacheDType(), shape));
    PIXTRAL_ASSIGN_OR_RETURN(kernels::Tensor v, backend.Alloc(backend.KvCacheDType(), shape));
    cache->keys_.push_back(std::move(k));
    cache->values_.push_back(std::move(v));
  }
  cache->blocks_.resize(layout.num_blocks);
  for (int32_t b = layout.num_blocks - 1; b >= 0; --b) cache->free_.push_back(b);
  return cache;
}

int32_t PagedKvCache::TakeBlock() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else {
    block = evictable_.front();
    evictable_.pop_front();
    BlockState& state = blocks_[block];
    index_.erase(state.key);
    state.published = false;
    ++evictions_;
  }
  blocks_[block].refs = 1;
  ++used_;
  return block;
}

absl::Status PagedKvCache::Reserve(int64_t num_positions, std::vector<int32_t>& table) {
  const int64_t needed = (num_positions + layout_.block_size - 1) / layout_.block_size;
  const int64_t more = needed - static_cast<int64_t>(table.size());
  if (more <= 0) return absl::OkStatus();
  if (more > num_free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache: ", num_positions, " positions need ", more, " more blocks of ",
        layout_.block_size, ", ", num_free_blocks(), " of ", layout_.num_blocks, " are free"));
  }
  for (int64_t i = 0; i < more; ++i) table.push_back(TakeBlock());
  return absl::OkStatus();
}

void PagedKvCache::Free(std::vector<int32_t>& table) {
  // Released in reverse so that a table's first blocks, the likeliest to be shared by a later
  // prompt, are the last to be evicted.
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    BlockState& state = blocks_[*it];
    if (--state.refs > 0) continue;
    --used_;
    if (state.published) {
      state.lru = evictable_.insert(evictable_.end(), *it);
    } else {
      free_.push_back(*it);
    }
  }
  table.clear();
}

int32_t PagedKvCache::Find(const BlockKey& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? -1 : it->second;
}

void PagedKvCache::Share(int32_t block, std::vector<int32_t>& table) {
  BlockState& state = blocks_[block];
  if (state.refs++ == 0) {
    evictable_.erase(state.lru);
    ++used_;
  }
  table.push_back(block);
}

void PagedKvCache::Publish(int32_t block, const BlockKey& key) {
  BlockState& state = blocks_[block];
  if (state.published || state.refs == 0) return;
  if (!index_.try_emplace(key, block).second) return;
  state.published = true;
  state.key = key;
}

}  // namespace pixtral
