#include "services/common/auth.h"

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

}  // namespace
}  // namespace pixtral
