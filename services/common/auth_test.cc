#include "services/common/auth.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

std::shared_ptr<const BearerTokens> Tokens(absl::string_view text) {
  absl::StatusOr<std::shared_ptr<const BearerTokens>> tokens = BearerTokens::FromText(text);
  EXPECT_TRUE(tokens.ok()) << tokens.status();
  return tokens.ok() ? *tokens : nullptr;
}

TEST(BearerTokensTest, AcceptsEveryTokenOfTheFile) {
  auto tokens = Tokens("alpha-1\n  beta.2  \n\n\tgamma_3\r\n");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->size(), 3u);
  EXPECT_TRUE(tokens->Check("Bearer alpha-1").ok());
  EXPECT_TRUE(tokens->Check("Bearer beta.2").ok());
  EXPECT_TRUE(tokens->Check("Bearer gamma_3").ok());
}

TEST(BearerTokensTest, SchemeIsCaseInsensitive) {
  auto tokens = Tokens("alpha");
  EXPECT_TRUE(tokens->Check("bearer alpha").ok());
  EXPECT_TRUE(tokens->Check("BEARER alpha").ok());
}

TEST(BearerTokensTest, RefusesMissingMalformedAndUnknownTokens) {
  auto tokens = Tokens("alpha");
  for (absl::string_view sent : {"", "   ", "alpha", "Basic alpha", "Bearer", "Bearer ",
                                 "Bearer alph", "Bearer alphaa", "Bearer ALPHA", "Bearer beta"}) {
    const absl::Status status = tokens->Check(sent);
    EXPECT_EQ(status.code(), absl::StatusCode::kUnauthenticated) << "'" << sent << "'";
    EXPECT_EQ(status.message().find("alph"), absl::string_view::npos) << status.message();
  }
}

TEST(BearerTokensTest, RefusesFilesThatWouldLockEveryoneOut) {
  EXPECT_FALSE(BearerTokens::FromText("").ok());
  EXPECT_FALSE(BearerTokens::FromText("\n  \n").ok());
  EXPECT_FALSE(BearerTokens::FromText("two words\n").ok());
  EXPECT_FALSE(BearerTokens::FromText(std::string(5000, 'a')).ok());
  EXPECT_FALSE(BearerTokens::FromFile("/nonexistent/tokens").ok());
}

void WriteAtomically(const std::string& path, const std::string& text) {
  std::ofstream(path + ".new") << text;
  std::rename((path + ".new").c_str(), path.c_str());
}

TEST(BearerTokensTest, TokenFileIsReloadedWhenItChanges) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/tokens";
  WriteAtomically(path, "old\n");
  auto tokens = BearerTokens::FromFile(path, absl::ZeroDuration());
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_TRUE((*tokens)->Check("Bearer old").ok());
  // Rotation: both, then only the new one.
  WriteAtomically(path, "old\nnew\n");
  EXPECT_TRUE((*tokens)->Check("Bearer new").ok());
  EXPECT_TRUE((*tokens)->Check("Bearer old").ok());
  WriteAtomically(path, "new\n");
  EXPECT_FALSE((*tokens)->Check("Bearer old").ok());
  EXPECT_TRUE((*tokens)->Check("Bearer new").ok());
  // A broken file keeps the last good tokens rather than locking everyone out.
  WriteAtomically(path, "\n");
  EXPECT_TRUE((*tokens)->Check("Bearer new").ok());
}

TEST(BearerTokensTest, ReloadsAtMostOncePerInterval) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/slow-tokens";
  WriteAtomically(path, "first\n");
  auto tokens = BearerTokens::FromFile(path, absl::Hours(1));
  ASSERT_TRUE(tokens.ok());
  WriteAtomically(path, "second\n");
  EXPECT_TRUE((*tokens)->Check("Bearer first").ok());
  EXPECT_FALSE((*tokens)->Check("Bearer second").ok());
}

}  // namespace
}  // namespace pixtral
