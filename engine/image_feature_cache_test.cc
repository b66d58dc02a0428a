#include "engine/image_feature_cache.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::ElementsAre;

// A 3-channel image of `rows` x 1 patches of 2x2 pixels, every pixel `value`.
struct TestImage {
  std::vector<float> pixels;
  Image view;
  TestImage(int rows, float value) : pixels(3 * 2 * rows * 2, value) {
    view = {2 * rows, 2, pixels};
  }
};

// A fake encoder: one row of width 1 per patch, holding the image's first pixel, and a record
// of how many images it was asked for.
struct CountingEncoder {
  std::vector<int> calls;
  absl::StatusOr<std::vector<float>> operator()(absl::Span<const Image> images) {
    calls.push_back(static_cast<int>(images.size()));
    std::vector<float> rows;
    for (const Image& image : images) rows.insert(rows.end(), image.height / 2, image.pixels[0]);
    return rows;
  }
};

TEST(ImageFeatureCacheTest, RepeatedImagesSkipTheEncoder) {
  ImageFeatureCache cache(1 << 20);
  CountingEncoder encoder;
  auto encode = [&](absl::Span<const Image> images) { return encoder(images); };
  TestImage a(2, 1.0f), b(3, 2.0f);
  auto first = EncodeWithCache(&cache, {a.view, b.view}, 2, encode);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(*first, ElementsAre(1, 1, 2, 2, 2));
  TestImage c(1, 3.0f);
  auto second = EncodeWithCache(&cache, {b.view, c.view, a.view}, 2, encode);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(*second, ElementsAre(2, 2, 2, 3, 1, 1));
  EXPECT_THAT(encoder.calls, ElementsAre(2, 1));  // only c the second time
  EXPECT_EQ(cache.stats().hits, 2);
  EXPECT_EQ(cache.stats().misses, 3);
}

TEST(ImageFeatureCacheTest, EachImagesRowsAreSharedWithTheCacheNotCopied) {
  ImageFeatureCache cache(1 << 20);
  CountingEncoder encoder;
  auto encode = [&](absl::Span<const Image> images) { return encoder(images); };
  TestImage a(2, 1.0f), b(3, 2.0f);
  auto each = EncodeEachWithCache(&cache, {a.view, b.view}, 2, encode);
  ASSERT_TRUE(each.ok());
  ASSERT_EQ(each->size(), 2u);
  EXPECT_THAT(*(*each)[0], ElementsAre(1, 1));
  EXPECT_THAT(*(*each)[1], ElementsAre(2, 2, 2));
  // The cache holds the very rows handed out, and hands them out again.
  EXPECT_EQ(cache.Find(ImageFeatureCache::Key(b.view)), (*each)[1]);
  auto again = EncodeEachWithCache(&cache, {b.view}, 2, encode);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)[0], (*each)[1]);
  EXPECT_THAT(encoder.calls, ElementsAre(2));
  // Without a cache every image is encoded, each still on its own.
  auto uncached = EncodeEachWithCache(nullptr, {b.view, a.view}, 2, encode);
  ASSERT_TRUE(uncached.ok());
  EXPECT_THAT(*(*uncached)[0], ElementsAre(2, 2, 2));
  EXPECT_THAT(*(*uncached)[1], ElementsAre(1, 1));
  EXPECT_THAT(encoder.calls, ElementsAre(2, 2));
}

TEST(ImageFeatureCacheTest, TheKeyIsTheContent) {
  TestImage a(2, 1.0f), same(2, 1.0f), other(2, 1.5f);
  EXPECT_TRUE(ImageFeatureCache::Key(a.view) == ImageFeatureCache::Key(same.view));
  EXPECT_FALSE(ImageFeatureCache::Key(a.view) == ImageFeatureCache::Key(other.view));
  // Same pixel values, another shape.
  Image reshaped{2, 4, a.pixels};
  EXPECT_FALSE(ImageFeatureCache::Key(a.view) == ImageFeatureCache::Key(reshaped));
}

TEST(ImageFeatureCacheTest, StaysWithinItsBytesDroppingTheLeastRecentlyUsed) {
  ImageFeatureCache cache(3 * 4 * sizeof(float));  // three entries of 4 floats
  auto entry = [](float v) { return std::make_shared<const std::vector<float>>(4, v); };
  const BlockKey k1{1, 1}, k2{2, 2}, k3{3, 3}, k4{4, 4};
  cache.Insert(k1, entry(1));
  cache.Insert(k2, entry(2));
  cache.Insert(k3, entry(3));
  ASSERT_NE(cache.Find(k1), nullptr);  // k2 is now the least recently used
  cache.Insert(k4, entry(4));
  EXPECT_EQ(cache.Find(k2), nullptr);
  EXPECT_NE(cache.Find(k1), nullptr);
  EXPECT_NE(cache.Find(k4), nullptr);
  EXPECT_LE(cache.stats().bytes, int64_t{3 * 4 * sizeof(float)});
  EXPECT_EQ(cache.stats().evictions, 1);
  cache.Insert({5, 5}, std::make_shared<const std::vector<float>>(100, 0.0f));  // too big
  EXPECT_EQ(cache.Find({5, 5}), nullptr);
}

TEST(ImageFeatureCacheTest, EncoderErrorsPassThroughAndNothingIsStored) {
  ImageFeatureCache cache(1 << 20);
  TestImage a(2, 1.0f);
  auto failed = EncodeWithCache(&cache, {a.view}, 2, [](absl::Span<const Image>) {
    return absl::StatusOr<std::vector<float>>(absl::InvalidArgumentError("bad image"));
  });
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cache.stats().entries, 0);
}

}  // namespace
}  // namespace pixtral
