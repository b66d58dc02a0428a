#include "common/splitmix64.h"

#include "gtest/gtest.h"

namespace pixtral {
namespace {

TEST(SplitMix64Test, MatchesPublishedSequence) {
  // First outputs of SplitMix64 seeded with 0 (the reference C implementation by Vigna).
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng.Next(), 0x6E789E6AA1B965F4ull);
}

TEST(SplitMix64Test, UniformIsTheTop53BitsOfNext) {
  SplitMix64 bits(9), uniform(9);
  for (int i = 0; i < 100; ++i) {
    const double u = uniform.Uniform();
    EXPECT_EQ(u, static_cast<double>(bits.Next() >> 11) / 9007199254740992.0);  // 2^53
    EXPECT_GE(u, 0.0);
    EXPECT_LT(u, 1.0);
  }
}

}  // namespace
}  // namespace pixtral
