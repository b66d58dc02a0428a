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

absl::StatusOr<std::vector<Features>> EncodeEachWithCache(
    ImageFeatureCache* cache, absl::Span<const Image> images, int64_t patch_size,
    const std::function<absl::StatusOr<std::vector<float>>(absl::Span<const Image>)>& encode,
    absl::Duration* hash_time) {
  std::vector<BlockKey> keys(images.size());
  std::vector<Features> found(images.size());
  std::vector<Image> misses;
  for (size_t i = 0; i < images.size(); ++i) {
    if (cache != nullptr) {
      const absl::Time hash_start = absl::Now();
      keys[i] = ImageFeatureCache::Key(images[i]);
      if (hash_time != nullptr) *hash_time += absl::Now() - hash_start;
      found[i] = cache->Find(keys[i]);
    }
    if (found[i] == nullptr) misses.push_back(images[i]);
  }
  if (misses.empty()) return found;
  absl::StatusOr<std::vector<float>> out = encode(misses);
  if (!out.ok()) return out.status();
  std::vector<float> encoded = *std::move(out);
  int64_t missed_rows = 0;
  for (const Image& image : misses) {
    missed_rows += (image.height / patch_size) * (image.width / patch_size);
  }
  const int64_t width = missed_rows > 0 ? std::ssize(encoded) / missed_rows : 0;
  const size_t encoded_values = encoded.size();  // `encoded` may be moved from below
  size_t offset = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    if (found[i] != nullptr) continue;
    const int64_t rows = (images[i].height / patch_size) * (images[i].width / patch_size);
    if (offset + rows * width > encoded_values) {
      return absl::InternalError("the encoder returned fewer rows than the images have");
    }
    // A lone miss's rows are moved, not copied.
    found[i] = offset == 0 && static_cast<size_t>(rows * width) == encoded_values
                   ? std::make_shared<std::vector<float>>(std::move(encoded))
                   : std::make_shared<std::vector<float>>(encoded.begin() + offset,
                                                          encoded.begin() + offset + rows * width);
    offset += rows * width;
    if (cache != nullptr) cache->Insert(keys[i], found[i]);
  }
  if (offset != encoded_values) {
    return absl::InternalError(
        absl::StrCat("the encoder returned ", encoded_values, " values, the images take ", offset));
  }
  return found;
}

absl::StatusOr<std::vector<float>> EncodeWithCache(
    ImageFeatureCache* cache, absl::Span<const Image> images, int64_t patch_size,
    const std::function<absl::StatusOr<std::vector<float>>(absl::Span<const Image>)>& encode,
    absl::Duration* hash_time) {
  if (cache == nullptr) return encode(images);
  absl::StatusOr<std::vector<Features>> each =
      EncodeEachWithCache(cache, images, patch_size, encode, hash_time);
  if (!each.ok()) return each.status();
  size_t total = 0;
  for (const Features& f : *each) total += f->size();
  std::vector<float> all;
  all.reserve(total);
  for (const Features& f : *each) all.insert(all.end(), f->begin(), f->end());
  return all;
}

}  // namespace pixtral
