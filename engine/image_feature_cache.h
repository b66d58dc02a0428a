// Vision-encoder outputs kept by the content of the image they came from, so that an image sent
// again (a new chat about the same picture, the next turn of one) skips the encoder.
//
// Keyed by a 128-bit hash of the preprocessed pixels and their size; bounded in bytes, the least
// recently used entries go first. Thread-safe: gRPC handlers share one.
//
//   ImageFeatureCache cache(/*max_bytes=*/1 << 30);
//   absl::StatusOr<std::vector<float>> rows = EncodeWithCache(
//       &cache, images, patch_size, [&](absl::Span<const Image> misses) {
//         return batcher.Encode(misses);  // only the images the cache did not hold
//       });
#ifndef PIXTRAL_ENGINE_IMAGE_FEATURE_CACHE_H_
#define PIXTRAL_ENGINE_IMAGE_FEATURE_CACHE_H_

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "decoder/kv_cache.h"
#include "vision_encoder/vision_encoder.h"

namespace pixtral {

using Features = std::shared_ptr<const std::vector<float>>;

class ImageFeatureCache {
 public:
  explicit ImageFeatureCache(int64_t max_bytes) : max_bytes_(max_bytes) {}

  // The content key of a preprocessed image.
  static BlockKey Key(const Image& image);

  // The features stored under `key` (now the most recently used), or null.
  Features Find(const BlockKey& key);
  // Stores `features`, evicting the least recently used entries to stay within max_bytes; an
  // entry larger than the whole budget is not kept.
  void Insert(const BlockKey& key, Features features);

  struct Stats {
    int64_t hits = 0, misses = 0, entries = 0, bytes = 0, evictions = 0;
  };
  Stats stats() const;

 private:
  struct Entry {
    Features features;
    std::list<BlockKey>::iterator lru;
  };

  const int64_t max_bytes_;
  mutable std::mutex mutex_;
  std::list<BlockKey> lru_;  // front: least recently used
  absl::flat_hash_map<BlockKey, Entry> entries_;
  Stats stats_;
};

// Each image's encoder output (f32 [its patches, encoder width]), in order, for `images` (each a
// whole number of patch_size patches): the cached ones taken from `cache`, the others encoded by
// one `encode` call (f32 [their patches, width], in order) and stored. Shared, not copied: a
// 1024x1024 image's rows are 16 MiB. `cache` may be null (everything encoded, nothing stored).
// `hash_time`, when given, gets the time spent hashing the pixels for the cache's keys added.
absl::StatusOr<std::vector<Features>> EncodeEachWithCache(
    ImageFeatureCache* cache, absl::Span<const Image> images, int64_t patch_size,
    const std::function<absl::StatusOr<std::vector<float>>(absl::Span<const Image>)>& encode,
    absl::Duration* hash_time = nullptr);

// The same, the images' rows concatenated: f32 [sum of patches, encoder width].
absl::StatusOr<std::vector<float>> EncodeWithCache(
    ImageFeatureCache* cache, absl::Span<const Image> images, int64_t patch_size,
    const std::function<absl::StatusOr<std::vector<float>>(absl::Span<const Image>)>& encode,
    absl::Duration* hash_time = nullptr);

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_IMAGE_FEATURE_CACHE_H_
