#include "services/common/request_timings.h"

#include <map>
#include <string>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

TEST(RequestTimingsTest, RepeatedNamesAddUp) {
  RequestTimings timings;
  timings.Add("vision_call", absl::Milliseconds(10));
  timings.Add("vision_call", absl::Milliseconds(5));
  timings.Add("images", 2);
  const std::map<std::string, double> values = timings.values();
  EXPECT_DOUBLE_EQ(values.at("vision_call"), 0.015);
  EXPECT_DOUBLE_EQ(values.at("images"), 2);
}

TEST(RequestTimingsTest, HeaderRoundTripsWithPrefix) {
  RequestTimings worker;
  worker.Add("encode", 0.0123456789);
  worker.Add("cache_hits", 1);
  RequestTimings gateway;
  gateway.Merge("vision.", worker.ToHeader());
  const std::map<std::string, double> values = gateway.values();
  ASSERT_EQ(values.size(), 2u);
  EXPECT_NEAR(values.at("vision.encode"), 0.0123456789, 1e-12);
  EXPECT_DOUBLE_EQ(values.at("vision.cache_hits"), 1);
}

TEST(RequestTimingsTest, MalformedEntriesAreSkipped) {
  const std::map<std::string, double> values =
      ParseTimingHeader("ok=1;=2;noequals;bad name=3;nan=nan;inf=inf;x=abc;;y=2.5");
  EXPECT_EQ(values, (std::map<std::string, double>{{"ok", 1}, {"y", 2.5}}));
}

TEST(RequestTimingsTest, AtMostSixtyFourEntriesAreRead) {
  std::string header;
  for (int i = 0; i < 100; ++i) header += "n" + std::to_string(i) + "=1;";
  EXPECT_EQ(ParseTimingHeader(header).size(), 64u);
}

}  // namespace
}  // namespace pixtral
