#include "engine/image_feature_cache.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "engine/block_hash.h"
#include "services/common/metrics_catalog.h"

namespace pixtral {
namespace {

int64_t Bytes(const Features& f) { return std::ssize(*f) * static_cast<int64_t>(sizeof(float)); }

}  // namespace

BlockKey ImageFeatureCache::Key(const Image& image) {
  BlockKey key = HashBytes(image.pixels.data(), image.pixels.size() * sizeof(float));
  key.hi ^= (static_cast<uint64_t>(image.height) << 32) ^ static_cast<uint64_t>(image.width);
  return key;
}

Features ImageFeatureCache::Find(const BlockKey& key) {
  metrics::ImageCacheQueries().Increment();
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  metrics::ImageCacheHits().Increment();
  lru_.splice(lru_.end(), lru_, it->second.lru);
  return it->second.features;
}

void ImageFeatureCache::Insert(const BlockKey& key, Features features) {
  if (features == nullptr || Bytes(features) > max_bytes_) return;
  std::lock_guard<std::mutex> lock(mutex_);
  if (entries_.contains(key)) return;
  stats_.bytes += Bytes(features);
  entries_[key] = {std::move(features), lru_.insert(lru_.end(), key)};
  while (stats_.bytes > max_bytes_) {
    auto oldest = entries_.find(lru_.front());
    stats_.bytes -= Bytes(oldest->second.features);
    entries_.erase(oldest);
    lru_.pop_front();
    ++stats_.evictions;
  }
}

ImageFeatureCache::Stats ImageFeatureCache::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Stats s = stats_;
  s.entries = std::ssize(entries_);
  return s;
}

absl::StatusOr<std::vector<float>> EncodeWithCache(
    ImageFeatureCache* cache, absl::Span<const Image> images, int64_t patch_size,
    const std::function<absl::StatusOr<std::vector<float>>(absl::Span<const Image>)>& encode,
    absl::Duration* hash_time) {
  if (cache == nullptr) return encode(images);
  std::vector<BlockKey> keys;
  std::vector<Features> found;
  std::vector<Image> misses;
  for (const Image& image : images) {
    const absl::Time hash_start = absl::Now();
    keys.push_back(ImageFeatureCache::Key(image));
    if (hash_time != nullptr) *hash_time += absl::Now() - hash_start;
    found.push_back(cache->Find(keys.back()));
    if (found.back() == nullptr) misses.push_back(image);
  }
  std::vector<float> encoded;
  if (!misses.empty()) {
    absl::StatusOr<std::vector<float>> out = encode(misses);
    if (!out.ok()) return out.status();
    encoded = *std::move(out);
  }
  int64_t missed_rows = 0;
  for (const Image& image : misses) {
    missed_rows += (image.height / patch_size) * (image.width / patch_size);
  }
  const int64_t width = missed_rows > 0 ? std::ssize(encoded) / missed_rows : 0;
  std::vector<float> all;
  int64_t total_rows = 0;
  for (const Image& image : images) {
    total_rows += (image.height / patch_size) * (image.width / patch_size);
  }
  all.reserve(total_rows * width);
  const size_t encoded_values = encoded.size();  // `encoded` may be moved from below
  size_t offset = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    if (found[i] == nullptr) {
      const int64_t rows = (images[i].height / patch_size) * (images[i].width / patch_size);
      if (offset + rows * width > encoded_values) {
        return absl::InternalError("the encoder returned fewer rows than the images have");
      }
      // One image's rows (16 MiB for 1024x1024) are moved into the cache rather than copied.
      auto features = offset == 0 && static_cast<size_t>(rows * width) == encoded_values
                          ? std::make_shared<std::vector<float>>(std::move(encoded))
                          : std::make_shared<std::vector<float>>(
                                encoded.begin() + offset, encoded.begin() + offset + rows * width);
      offset += rows * width;
      cache->Insert(keys[i], features);
      found[i] = std::move(features);
    }
    all.insert(all.end(), found[i]->begin(), found[i]->end());
  }
  if (offset != encoded_values) {
    return absl::InternalError(
        absl::StrCat("the encoder returned ", encoded_values, " values, the images take ", offset));
  }
  return all;
}

}  // namespace pixtral
