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
  for (int32_t b = layout.num_blocks - 1; b >= 0; --b) cache->free_.push_back(b);
  return cache;
}

absl::Status PagedKvCache::Reserve(int64_t num_positions, std::vector<int32_t>& table) {
  const int64_t needed = (num_positions + layout_.block_size - 1) / layout_.block_size;
  const int64_t more = needed - static_cast<int64_t>(table.size());
  if (more <= 0) return absl::OkStatus();
  if (more > static_cast<int64_t>(free_.size())) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache: ", num_positions, " positions need ", more, " more blocks of ",
        layout_.block_size, ", ", free_.size(), " of ", layout_.num_blocks, " are free"));
  }
  for (int64_t i = 0; i < more; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return absl::OkStatus();
}

void PagedKvCache::Free(std::vector<int32_t>& table) {
  free_.insert(free_.end(), table.rbegin(), table.rend());
  table.clear();
}

}  // namespace pixtral
