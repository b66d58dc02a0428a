#include "services/common/metrics.h"

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace pixtral::metrics {
namespace {

TEST(MetricsTest, CounterRendersHelpTypeAndValue) {
  Registry registry;
  registry.GetCounter("pixtral_things_total", "Things done.").Increment(3);
  EXPECT_EQ(registry.Render(),
            "# HELP pixtral_things_total Things done.\n"
            "# TYPE pixtral_things_total counter\n"
            "pixtral_things_total 3\n");
}

TEST(MetricsTest, CounterIgnoresNegativeAndNaN) {
  Counter counter;
  counter.Increment(2);
  counter.Increment(-5);
  counter.Increment(std::nan(""));
  EXPECT_EQ(counter.value(), 2);
}

TEST(MetricsTest, SeriesOfAFamilySortByLabelsWhateverTheOrderGiven) {
  Registry registry;
  registry.GetCounter("pixtral_calls_total", "Calls.", {{"method", "b"}, {"code", "OK"}})
      .Increment();
  registry.GetCounter("pixtral_calls_total", "Calls.", {{"code", "OK"}, {"method", "a"}})
      .Increment(2);
  // The same labels in another order are the same series.
  registry.GetCounter("pixtral_calls_total", "Calls.", {{"method", "a"}, {"code", "OK"}})
      .Increment();
  EXPECT_EQ(registry.Render(),
            "# HELP pixtral_calls_total Calls.\n"
            "# TYPE pixtral_calls_total counter\n"
            "pixtral_calls_total{code=\"OK\",method=\"a\"} 3\n"
            "pixtral_calls_total{code=\"OK\",method=\"b\"} 1\n");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry registry;
  registry.GetGauge("pixtral_g", "back\\slash\nnew line", {{"v", "a\"b\\c\nd"}}).Set(1);
  EXPECT_EQ(registry.Render(),
            "# HELP pixtral_g back\\\\slash\\nnew line\n"
            "# TYPE pixtral_g gauge\n"
            "pixtral_g{v=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsTest, GaugeSetsAndAdds) {
  Registry registry;
  Gauge& gauge = registry.GetGauge("pixtral_running", "Running.");
  gauge.Set(5);
  gauge.Add(-2);
  gauge.Add(0.5);
  EXPECT_EQ(gauge.value(), 3.5);
  EXPECT_NE(registry.Render().find("pixtral_running 3.5\n"), std::string::npos);
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndUpperBoundsInclusive) {
  Registry registry;
  Histogram& histogram =
      registry.GetHistogram("pixtral_latency_seconds", "Latency.", {0.125, 0.5, 1}, {{"m", "x"}});
  for (double value : {0.0625, 0.125, 0.25, 0.75, 2.0, 3.0}) histogram.Observe(value);
  // 0.125 falls in le="0.125" (Prometheus buckets are <=).
  EXPECT_EQ(registry.Render(),
            "# HELP pixtral_latency_seconds Latency.\n"
            "# TYPE pixtral_latency_seconds histogram\n"
            "pixtral_latency_seconds_bucket{m=\"x\",le=\"0.125\"} 2\n"
            "pixtral_latency_seconds_bucket{m=\"x\",le=\"0.5\"} 3\n"
            "pixtral_latency_seconds_bucket{m=\"x\",le=\"1\"} 4\n"
            "pixtral_latency_seconds_bucket{m=\"x\",le=\"+Inf\"} 6\n"
            "pixtral_latency_seconds_sum{m=\"x\"} 6.1875\n"
            "pixtral_latency_seconds_count{m=\"x\"} 6\n");
}

TEST(MetricsTest, FamiliesRenderInNameOrder) {
  Registry registry;
  registry.GetGauge("pixtral_b", "B.");
  registry.GetCounter("pixtral_a_total", "A.");
  const std::string text = registry.Render();
  EXPECT_LT(text.find("pixtral_a_total"), text.find("pixtral_b"));
}

TEST(MetricsTest, ValuesUseShortestRoundTripAndSpecialNames) {
  EXPECT_EQ(FormatValue(0.1), "0.1");
  EXPECT_EQ(FormatValue(123456789012.0), "123456789012");
  EXPECT_EQ(FormatValue(1e-9), "1e-09");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

TEST(MetricsTest, CollectorsRefreshValuesBeforeEachRender) {
  Registry registry;
  int calls = 0;
  registry.AddCollector([&] { registry.GetGauge("pixtral_polled", "Polled.").Set(++calls); });
  EXPECT_NE(registry.Render().find("pixtral_polled 1\n"), std::string::npos);
  EXPECT_NE(registry.Render().find("pixtral_polled 2\n"), std::string::npos);
}

TEST(MetricsTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(0.001, 10, 4), (std::vector<double>{0.001, 0.01, 0.1, 1}));
  EXPECT_EQ(LinearBuckets(1, 2, 3), (std::vector<double>{1, 3, 5}));
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  Registry registry;
  Counter& counter = registry.GetCounter("pixtral_n_total", "N.");
  Histogram& histogram = registry.GetHistogram("pixtral_h", "H.", {1});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        counter.Increment();
        histogram.Observe(0.5);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(counter.value(), 40000);
  EXPECT_EQ(histogram.count(), 40000u);
  EXPECT_EQ(histogram.sum(), 20000);
}

TEST(MetricsDeathTest, BadNamesAndTypeClashesStopTheProgram) {
  Registry registry;
  EXPECT_DEATH(registry.GetCounter("9lives", "x"), "bad metric name");
  EXPECT_DEATH(registry.GetCounter("pixtral_x", "x", {{"le", "1"}}), "bad label name");
  EXPECT_DEATH(registry.GetCounter("pixtral_x", "x", {{"a", "1"}, {"a", "2"}}), "given twice");
  registry.GetGauge("pixtral_y", "y");
  EXPECT_DEATH(registry.GetCounter("pixtral_y", "y"), "another type");
}

}  // namespace
}  // namespace pixtral::metrics
