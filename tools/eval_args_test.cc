#include "tools/eval_args.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

absl::StatusOr<EvalArgs> Parse(const std::vector<std::string>& args) {
  return EvalArgs::Parse(args, {"model", "max-tokens"}, {"ignore-eos"});
}

TEST(EvalArgsTest, ValuesAndSwitches) {
  absl::StatusOr<EvalArgs> args = Parse({"--model", "/m", "--max-tokens=12", "--ignore-eos"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->Get("model"), "/m");
  EXPECT_EQ(*args->GetInt("max-tokens", 0), 12);
  EXPECT_TRUE(args->Has("ignore-eos"));
  EXPECT_TRUE(args->Require({"model", "max-tokens"}).ok());
}

TEST(EvalArgsTest, Defaults) {
  absl::StatusOr<EvalArgs> args = Parse({});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_FALSE(args->Has("ignore-eos"));
  EXPECT_EQ(*args->GetInt("max-tokens", 7), 7);
  EXPECT_EQ(args->Require({"model"}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(EvalArgsTest, RejectsMalformedCommandLines) {
  EXPECT_FALSE(Parse({"--bogus", "1"}).ok());
  EXPECT_FALSE(Parse({"--model"}).ok());
  EXPECT_FALSE(Parse({"--ignore-eos=1"}).ok());
  EXPECT_FALSE(Parse({"positional"}).ok());
  EXPECT_FALSE(Parse({"--max-tokens", "ten"})->GetInt("max-tokens", 0).ok());
}

TEST(EvalArgsTest, IntegersMustFitTheirType) {
  absl::StatusOr<EvalArgs> args = Parse({"--max-tokens", "3000000000"});
  ASSERT_TRUE(args.ok()) << args.status();
  EXPECT_EQ(args->GetInt("max-tokens", 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*args->GetInt<int64_t>("max-tokens", 0), 3000000000);
}

TEST(EvalArgsTest, UsageErrorsExitWithTwoAndFailuresWithOne) {
  EXPECT_EQ(ReportUsageError("test", absl::InvalidArgumentError("--x is required")), 2);
  EXPECT_EQ(ReportFailure("test", absl::NotFoundError("no such file")), 1);
}

}  // namespace
}  // namespace pixtral
