// Process-wide metrics in Prometheus' data model: counters, gauges and histograms, each a family
// of series told apart by labels, rendered in the text exposition format (version 0.0.4) that
// `--metrics_port` serves at /metrics (services/common/metrics_http_server.h).
//
// Adding a metric is one line where the event happens; the reference is stable for the life of
// the process, so keep it in a function-local static:
//
//   static metrics::Counter& hits = metrics::Registry::Default().GetCounter(
//       "pixtral_prefix_cache_hits_total", "Prefix-cache lookups that found a block.");
//   hits.Increment();
//
//   metrics::Registry::Default()
//       .GetCounter("pixtral_requests_total", "Calls by method and status.",
//                   {{"method", "/pixtral.v1.Gateway/StreamChatCompletion"}, {"code", "OK"}})
//       .Increment();
//
//   static metrics::Histogram& ttft = metrics::Registry::Default().GetHistogram(
//       "pixtral_time_to_first_token_seconds", "...", metrics::ExponentialBuckets(0.01, 2, 14));
//   ttft.Observe(0.283);
//
// Every operation is thread-safe; Increment/Set/Observe take no lock. Names and label keys are
// the program's own (checked, a bad one is a programming error that stops the process); label
// values must come from small bounded sets (method names, status codes), never from request
// content, since every distinct value is a series kept forever.
#ifndef PIXTRAL_SERVICES_COMMON_METRICS_H_
#define PIXTRAL_SERVICES_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace pixtral::metrics {

// Label key/value pairs; their order does not matter.
using Labels = std::vector<std::pair<std::string, std::string>>;

// Only goes up (or resets with the process).
class Counter {
 public:
  void Increment(double amount = 1);  // a negative amount is ignored
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Counts observations into buckets with the given upper bounds (an implicit +Inf bucket follows
// the last one) and keeps their sum.
class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  const std::vector<double>& upper_bounds() const { return upper_bounds_; }
  // Cumulative counts, one per bound plus the +Inf bucket (= count()).
  std::vector<uint64_t> CumulativeCounts() const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket, not cumulative; +Inf last
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// `count` bounds: start, start*factor, start*factor^2, ... (start > 0, factor > 1).
std::vector<double> ExponentialBuckets(double start, double factor, int count);
// `count` bounds: start, start+width, ...
std::vector<double> LinearBuckets(double start, double width, int count);

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process's registry: the one every server's /metrics renders.
  static Registry& Default();

  // The series of family `name` with `labels`, created on first use. A family keeps the type and
  // help (and, for histograms, the bounds) of its first call.
  Counter& GetCounter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& GetGauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& GetHistogram(std::string_view name, std::string_view help,
                          std::vector<double> upper_bounds, const Labels& labels = {});

  // Every family sorted by name, in the text exposition format. Runs the collectors first.
  std::string Render() const;

  // `collect` runs at the start of every Render(), on the scraping thread, to refresh values
  // that are cheaper to read when asked (device memory) than to track; it may call Get*.
  void AddCollector(std::function<void()> collect);

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    Labels labels;  // sorted by key
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    Type type;
    std::string help;
    std::vector<double> upper_bounds;
    std::map<std::string, Series> series;  // by rendered label set, so output order is stable
  };

  Series& GetSeries(Type type, std::string_view name, std::string_view help, const Labels& labels,
                    std::vector<double> upper_bounds);

  mutable absl::Mutex collectors_mutex_;  // held while collectors run: one scrape at a time
  std::vector<std::function<void()>> collectors_ ABSL_GUARDED_BY(collectors_mutex_);
  mutable absl::Mutex mutex_;
  std::map<std::string, Family, std::less<>> families_ ABSL_GUARDED_BY(mutex_);
};

// A number as the exposition format writes it: shortest round-trip decimal, +Inf, -Inf, NaN.
std::string FormatValue(double value);

}  // namespace pixtral::metrics

#endif  // PIXTRAL_SERVICES_COMMON_METRICS_H_
