#include "decoder/kv_cache.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {
namespace {

class PagedKvCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cache = PagedKvCache::Create(
        *backend_,
        {.num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .block_size = 4, .num_blocks = 5});
    ASSERT_TRUE(cache.ok()) << cache.status();
    cache_ = *std::move(cache);
  }

  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PagedKvCache> cache_;
};

TEST_F(PagedKvCacheTest, StorageHasOneTensorPerLayerAndKind) {
  EXPECT_EQ(cache_->keys(1).DebugString(), "F32[5, 4, 2, 4]");
  EXPECT_EQ(cache_->values(0).DebugString(), "F32[5, 4, 2, 4]");
  EXPECT_EQ(cache_->capacity(), 20);
}

TEST_F(PagedKvCacheTest, ReserveRoundsUpToWholeBlocks) {
  std::vector<int32_t> table;
  ASSERT_TRUE(cache_->Reserve(5, table).ok());
  EXPECT_EQ(table.size(), 2u);
  ASSERT_TRUE(cache_->Reserve(8, table).ok());  // already covered
  EXPECT_EQ(table.size(), 2u);
  ASSERT_TRUE(cache_->Reserve(9, table).ok());
  EXPECT_EQ(table.size(), 3u);
  EXPECT_EQ(cache_->num_free_blocks(), 2);
}

TEST_F(PagedKvCacheTest, SequencesGetDistinctBlocks) {
  std::vector<int32_t> a, b;
  ASSERT_TRUE(cache_->Reserve(8, a).ok());
  ASSERT_TRUE(cache_->Reserve(12, b).ok());
  std::vector<int32_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::unique(all.begin(), all.end()), all.end());
}

TEST_F(PagedKvCacheTest, TooManyPositionsLeaveTheTableUnchanged) {
  std::vector<int32_t> table;
  ASSERT_TRUE(cache_->Reserve(4, table).ok());
  EXPECT_EQ(cache_->Reserve(21, table).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(cache_->num_free_blocks(), 4);
}

TEST_F(PagedKvCacheTest, FreeReturnsEveryBlock) {
  std::vector<int32_t> table;
  ASSERT_TRUE(cache_->Reserve(20, table).ok());
  EXPECT_EQ(cache_->num_free_blocks(), 0);
  cache_->Free(table);
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(cache_->num_free_blocks(), 5);
}

TEST_F(PagedKvCacheTest, PublishedBlocksAreSharedWithReferenceCounts) {
  std::vector<int32_t> a, b;
  ASSERT_TRUE(cache_->Reserve(8, a).ok());
  const BlockKey key{1, 2};
  EXPECT_EQ(cache_->Find(key), -1);
  cache_->Publish(a[0], key);
  ASSERT_EQ(cache_->Find(key), a[0]);
  cache_->Share(a[0], b);
  EXPECT_EQ(cache_->num_used_blocks(), 2);
  cache_->Free(a);  // b still holds block a[0]
  EXPECT_EQ(cache_->num_used_blocks(), 1);
  EXPECT_EQ(cache_->num_free_blocks(), 4);
  cache_->Free(b);  // unreferenced but cached: evictable, counted free, still findable
  EXPECT_EQ(cache_->num_used_blocks(), 0);
  EXPECT_EQ(cache_->num_free_blocks(), 5);
  EXPECT_GE(cache_->Find(key), 0);
  EXPECT_EQ(cache_->num_cached_blocks(), 1);
}

TEST_F(PagedKvCacheTest, ASecondBlockWithAKnownKeyIsNotPublished) {
  std::vector<int32_t> a, b;
  ASSERT_TRUE(cache_->Reserve(4, a).ok());
  ASSERT_TRUE(cache_->Reserve(4, b).ok());
  cache_->Publish(a[0], {7, 7});
  cache_->Publish(b[0], {7, 7});
  EXPECT_EQ(cache_->Find({7, 7}), a[0]);
  cache_->Free(b);
  EXPECT_EQ(cache_->num_cached_blocks(), 1);
}

TEST_F(PagedKvCacheTest, ReserveEvictsTheLeastRecentlyReleasedCachedBlocksLast) {
  std::vector<int32_t> first, second, all;
  ASSERT_TRUE(cache_->Reserve(4, first).ok());
  ASSERT_TRUE(cache_->Reserve(4, second).ok());
  cache_->Publish(first[0], {1, 1});
  cache_->Publish(second[0], {2, 2});
  cache_->Free(first);
  cache_->Free(second);
  // 3 never-cached free blocks go first, then the cached block released first.
  ASSERT_TRUE(cache_->Reserve(16, all).ok());
  EXPECT_EQ(cache_->num_evictions(), 1);
  EXPECT_EQ(cache_->Find({1, 1}), -1);
  EXPECT_GE(cache_->Find({2, 2}), 0);
  ASSERT_TRUE(cache_->Reserve(20, all).ok());
  EXPECT_EQ(cache_->Find({2, 2}), -1);
  EXPECT_EQ(cache_->num_free_blocks(), 0);
  cache_->Free(all);
  EXPECT_EQ(cache_->num_used_blocks(), 0);
  EXPECT_EQ(cache_->num_cached_blocks(), 0);
}

TEST_F(PagedKvCacheTest, SharingAnEvictableBlockTakesItOffTheFreeCount) {
  std::vector<int32_t> a, b, rest;
  ASSERT_TRUE(cache_->Reserve(4, a).ok());
  cache_->Publish(a[0], {3, 3});
  cache_->Free(a);
  cache_->Share(cache_->Find({3, 3}), b);
  EXPECT_EQ(cache_->num_free_blocks(), 4);
  // Every other block can be reserved; the shared one is never handed out twice.
  ASSERT_TRUE(cache_->Reserve(16, rest).ok());
  EXPECT_EQ(std::count(rest.begin(), rest.end(), b[0]), 0);
  EXPECT_EQ(cache_->Reserve(20, rest).code(), absl::StatusCode::kResourceExhausted);
}

TEST(PagedKvCacheCreateTest, RejectsEmptyLayouts) {
  auto backend = kernels::NewCpuBackend();
  EXPECT_FALSE(PagedKvCache::Create(
                   *backend, {.num_layers = 1, .num_kv_heads = 1, .head_dim = 4, .block_size = 0})
                   .ok());
}

}  // namespace
}  // namespace pixtral
