#include "engine/block_hash.h"

#include <vector>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

TEST(BlockHashTest, OneKeyPerFullBlock) {
  EXPECT_EQ(ChainBlockKeys(std::vector<uint64_t>(11, 7), 4).size(), 2u);
  EXPECT_TRUE(ChainBlockKeys(std::vector<uint64_t>(3, 7), 4).empty());
}

TEST(BlockHashTest, AKeyDependsOnTheWholePrefix) {
  const std::vector<uint64_t> a = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<uint64_t> b = a;
  b[0] = 9;  // first block differs, second block's own tokens are equal
  const std::vector<BlockKey> ka = ChainBlockKeys(a, 4), kb = ChainBlockKeys(b, 4);
  EXPECT_FALSE(ka[0] == kb[0]);
  EXPECT_FALSE(ka[1] == kb[1]);
  EXPECT_TRUE(ChainBlockKeys(a, 4)[1] == ka[1]);
}

TEST(BlockHashTest, ExtendingMatchesChainingAtOnce) {
  const std::vector<uint64_t> keys = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  std::vector<BlockKey> grown;
  ExtendBlockKeys(absl::MakeConstSpan(keys).first(5), 4, grown);
  ExtendBlockKeys(keys, 4, grown);
  const std::vector<BlockKey> all = ChainBlockKeys(keys, 4);
  ASSERT_EQ(grown.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(grown[i] == all[i]);
}

TEST(BlockHashTest, ImageRowsNeverLookLikeTokens) {
  const BlockKey image = HashBytes("pixels", 6);
  for (int64_t row = 0; row < 100; ++row) {
    EXPECT_GT(ImageRowKey(image, row), uint64_t{0xffffffff});
  }
  EXPECT_NE(ImageRowKey(image, 0), ImageRowKey(image, 1));
  EXPECT_NE(ImageRowKey(image, 0), ImageRowKey(HashBytes("pixelz", 6), 0));
}

TEST(BlockHashTest, ContentHashSeesEveryByteAndTheLength) {
  const char data[] = "0123456789abcdef0";
  EXPECT_FALSE(HashBytes(data, 16) == HashBytes(data, 17));
  char other[sizeof(data)];
  std::copy(data, data + sizeof(data), other);
  other[15] = 'X';
  EXPECT_FALSE(HashBytes(data, 16) == HashBytes(other, 16));
  EXPECT_TRUE(HashBytes(data, 16) == HashBytes(data, 16));
}

TEST(BlockHashTest, LongInputsSeeEveryByteInEveryLane) {
  std::vector<unsigned char> data(1000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<unsigned char>(i * 7);
  const BlockKey base = HashBytes(data.data(), data.size());
  EXPECT_TRUE(HashBytes(data.data(), data.size()) == base);
  for (size_t i = 0; i < data.size(); ++i) {
    std::vector<unsigned char> flipped = data;
    flipped[i] ^= 1;
    const BlockKey key = HashBytes(flipped.data(), flipped.size());
    EXPECT_NE(key.hi, base.hi) << i;  // both halves see the byte
    EXPECT_NE(key.lo, base.lo) << i;
  }
}

TEST(BlockHashTest, LongInputsSeeOrderAndLength) {
  std::vector<uint64_t> words(64, 0);
  words[0] = 1;  // lane 0 of the first stripe
  const BlockKey first = HashBytes(words.data(), words.size() * 8);
  std::swap(words[0], words[1]);  // the same word in the next lane
  EXPECT_FALSE(HashBytes(words.data(), words.size() * 8) == first);
  std::swap(words[1], words[4]);  // the same lane, the next stripe
  EXPECT_FALSE(HashBytes(words.data(), words.size() * 8) == first);
  std::vector<uint64_t> longer(65, 0);
  longer[0] = 1;
  EXPECT_FALSE(HashBytes(longer.data(), longer.size() * 8) == first);  // one more zero word
}

}  // namespace
}  // namespace pixtral
