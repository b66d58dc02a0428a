#include "services/common/public_status.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(PublicStatusTest, RequestErrorsKeepTheirMessage) {
  const grpc::Status status =
      PublicStatus(absl::InvalidArgumentError("message 2 has no role"), "id1");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(status.error_message(), "message 2 has no role");
  EXPECT_EQ(PublicStatus(absl::ResourceExhaustedError("image 1 has 9000000 pixels"), "id1")
                .error_message(),
            "image 1 has 9000000 pixels");
}

TEST(PublicStatusTest, SystemErrorsAreReplacedAndCarryTheRequestId) {
  // What gRPC writes when a vision worker at a cluster address is down.
  const grpc::Status unavailable = PublicStatus(
      absl::UnavailableError("failed to connect to all addresses; last error: UNKNOWN: "
                             "ipv4:10.244.1.7:9001: Failed to connect to remote host"),
      "abc123");
  EXPECT_EQ(unavailable.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(unavailable.error_message(), Not(HasSubstr("10.244")));
  EXPECT_THAT(unavailable.error_message(), HasSubstr("abc123"));
  const grpc::Status internal = PublicStatus(absl::InternalError("Cancelling all calls"), "x");
  EXPECT_EQ(internal.error_code(), grpc::StatusCode::INTERNAL);
  EXPECT_THAT(internal.error_message(), Not(HasSubstr("Cancelling")));
}

TEST(PublicStatusTest, TransportTextIsHiddenEvenUnderARequestCode) {
  const grpc::Status status = PublicStatus(
      absl::ResourceExhaustedError("Sent message larger than max (75497586 vs. 67108864)"), "r");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(status.error_message(), Not(HasSubstr("larger than max")));
  EXPECT_THAT(status.error_message(), HasSubstr("request id r"));
}

TEST(PublicStatusTest, OkStaysOk) { EXPECT_TRUE(PublicStatus(absl::OkStatus(), "r").ok()); }

}  // namespace
}  // namespace pixtral
