#include "common/utf8.h"

#include <string>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

constexpr size_t kNpos = absl::string_view::npos;

std::string Replaced(absl::string_view bytes) {
  std::string out;
  AppendUtf8Replacing(bytes, &out);
  return out;
}

TEST(FindInvalidUtf8Test, AcceptsWellFormedText) {
  EXPECT_EQ(FindInvalidUtf8(""), kNpos);
  EXPECT_EQ(FindInvalidUtf8("plain ascii that is longer than eight bytes"), kNpos);
  EXPECT_EQ(FindInvalidUtf8("é中😀\xF4\x8F\xBF\xBF"), kNpos);
}

TEST(FindInvalidUtf8Test, PointsAtTheFirstBadByte) {
  EXPECT_EQ(FindInvalidUtf8("abcdefghij\xFFz"), 10u);
  EXPECT_EQ(FindInvalidUtf8("ab\xC3"), 2u);            // Truncated.
  EXPECT_EQ(FindInvalidUtf8("\xC0\xAF"), 0u);          // Overlong.
  EXPECT_EQ(FindInvalidUtf8("x\xED\xA0\x80"), 1u);     // Surrogate.
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);  // Beyond U+10FFFF.
  EXPECT_EQ(FindInvalidUtf8("\x80"), 0u);              // Lone continuation byte.
}

// Expected strings follow Python: b"...".decode("utf-8", errors="replace").
TEST(AppendUtf8ReplacingTest, ReplacesEachMaximalIllFormedSubsequence) {
  EXPECT_EQ(Replaced("ok"), "ok");
  EXPECT_EQ(Replaced("\xE4\xBD"), "\uFFFD");  // One truncated character.
  EXPECT_EQ(Replaced("\xE4\xBDx"), "\uFFFDx");
  EXPECT_EQ(Replaced("\x80\x80"), "\uFFFD\uFFFD");            // Each stray byte.
  EXPECT_EQ(Replaced("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");  // Surrogates: byte by byte.
  EXPECT_EQ(Replaced("\xF0\x9F\x98"), "\uFFFD");
  EXPECT_EQ(Replaced("\xF0\x9F\x98\x80"), "😀");
}

TEST(IncompleteUtf8SuffixLengthTest, HoldsBackOnlyUnfinishedCharacters) {
  EXPECT_EQ(IncompleteUtf8SuffixLength(""), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("abc"), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xF0"), 1u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xF0\x9F"), 2u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xF0\x9F\x98\x80"), 0u);
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xFF"), 0u);      // Never valid: nothing to wait for.
  EXPECT_EQ(IncompleteUtf8SuffixLength("a\xE0\x80"), 0u);  // Already ill-formed.
}

}  // namespace
}  // namespace pixtral
