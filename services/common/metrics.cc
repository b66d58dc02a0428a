#include "services/common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace pixtral::metrics {
namespace {

// [a-zA-Z_:][a-zA-Z0-9_:]* for names; label keys the same without ':' and not starting "__".
bool IsValidName(std::string_view name, bool colons) {
  if (name.empty() || absl::ascii_isdigit(name[0])) return false;
  return std::all_of(name.begin(), name.end(), [colons](char c) {
    return absl::ascii_isalnum(c) || c == '_' || (colons && c == ':');
  });
}

// Label values escape backslash, double quote and newline; help text backslash and newline.
std::string Escape(std::string_view text, bool quotes) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quotes && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// {a="1",b="2"}, or "" with no labels. `extra` (the histogram's le) goes last.
std::string RenderLabels(const Labels& labels, std::string_view extra = {}) {
  if (labels.empty() && extra.empty()) return "";
  std::string out = "{";
  for (const auto& [key, value] : labels) {
    if (out.size() > 1) out += ",";
    absl::StrAppend(&out, key, "=\"", Escape(value, /*quotes=*/true), "\"");
  }
  if (!extra.empty()) {
    if (out.size() > 1) out += ",";
    out += extra;
  }
  out += "}";
  return out;
}

void AtomicAdd(std::atomic<double>& target, double amount) {
  double current = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

}  // namespace

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  const std::to_chars_result result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

void Counter::Increment(double amount) {
  if (!(amount > 0)) return;  // also drops NaN
  AtomicAdd(value_, amount);
}

void Gauge::Add(double amount) { AtomicAdd(value_, amount); }

Histogram::Histogram(std::vector<double> upper_bounds)
    : upper_bounds_(std::move(upper_bounds)),
      buckets_(new std::atomic<uint64_t>[upper_bounds_.size() + 1]) {
  CHECK(std::is_sorted(upper_bounds_.begin(), upper_bounds_.end()) &&
        std::adjacent_find(upper_bounds_.begin(), upper_bounds_.end()) == upper_bounds_.end())
      << "histogram bounds must be strictly increasing";
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  // The first bound >= value: Prometheus buckets are "less than or equal".
  const size_t bucket =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, value);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> counts(upper_bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    counts[i] = total;
  }
  return counts;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  CHECK(start > 0 && factor > 1 && count > 0);
  std::vector<double> bounds;
  for (double bound = start; static_cast<int>(bounds.size()) < count; bound *= factor) {
    bounds.push_back(bound);
  }
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  CHECK(width > 0 && count > 0);
  std::vector<double> bounds;
  for (int i = 0; i < count; ++i) bounds.push_back(start + i * width);
  return bounds;
}

Registry& Registry::Default() {
  static Registry* registry = new Registry();  // never destroyed: metrics outlive main's locals
  return *registry;
}

Registry::Series& Registry::GetSeries(Type type, std::string_view name, std::string_view help,
                                      const Labels& labels, std::vector<double> upper_bounds) {
  CHECK(IsValidName(name, /*colons=*/true)) << "bad metric name \"" << name << "\"";
  Labels sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i) {
    CHECK(IsValidName(sorted[i].first, /*colons=*/false) && sorted[i].first != "le" &&
          !sorted[i].first.starts_with("__"))
        << "bad label name \"" << sorted[i].first << "\" on " << name;
    CHECK(i == 0 || sorted[i].first != sorted[i - 1].first)
        << "label \"" << sorted[i].first << "\" given twice on " << name;
  }
  absl::MutexLock lock(&mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{type, std::string(help), upper_bounds}).first;
  }
  Family& family = it->second;
  CHECK(family.type == type) << "metric " << name << " registered with another type";
  auto [series, inserted] = family.series.try_emplace(RenderLabels(sorted));
  if (inserted) {
    series->second.labels = std::move(sorted);
    switch (type) {
      case Type::kCounter:
        series->second.counter = std::make_unique<Counter>();
        break;
      case Type::kGauge:
        series->second.gauge = std::make_unique<Gauge>();
        break;
      case Type::kHistogram:
        series->second.histogram = std::make_unique<Histogram>(family.upper_bounds);
        break;
    }
  }
  return series->second;
}

Counter& Registry::GetCounter(std::string_view name, std::string_view help, const Labels& labels) {
  return *GetSeries(Type::kCounter, name, help, labels, {}).counter;
}

Gauge& Registry::GetGauge(std::string_view name, std::string_view help, const Labels& labels) {
  return *GetSeries(Type::kGauge, name, help, labels, {}).gauge;
}

Histogram& Registry::GetHistogram(std::string_view name, std::string_view help,
                                  std::vector<double> upper_bounds, const Labels& labels) {
  return *GetSeries(Type::kHistogram, name, help, labels, std::move(upper_bounds)).histogram;
}

void Registry::AddCollector(std::function<void()> collect) {
  absl::MutexLock lock(&collectors_mutex_);
  collectors_.push_back(std::move(collect));
}

std::string Registry::Render() const {
  {
    absl::MutexLock lock(&collectors_mutex_);
    for (const std::function<void()>& collect : collectors_) collect();
  }
  std::string out;
  absl::MutexLock lock(&mutex_);
  for (const auto& [name, family] : families_) {
    static constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};
    absl::StrAppend(&out, "# HELP ", name, " ", Escape(family.help, /*quotes=*/false), "\n",
                    "# TYPE ", name, " ", kTypeNames[static_cast<int>(family.type)], "\n");
    for (const auto& [rendered_labels, series] : family.series) {
      if (series.counter != nullptr) {
        absl::StrAppend(&out, name, rendered_labels, " ", FormatValue(series.counter->value()),
                        "\n");
      } else if (series.gauge != nullptr) {
        absl::StrAppend(&out, name, rendered_labels, " ", FormatValue(series.gauge->value()), "\n");
      } else {
        const Histogram& histogram = *series.histogram;
        const std::vector<uint64_t> counts = histogram.CumulativeCounts();
        for (size_t i = 0; i < counts.size(); ++i) {
          const double bound = i < histogram.upper_bounds().size()
                                   ? histogram.upper_bounds()[i]
                                   : std::numeric_limits<double>::infinity();
          absl::StrAppend(
              &out, name, "_bucket",
              RenderLabels(series.labels, absl::StrCat("le=\"", FormatValue(bound), "\"")), " ",
              counts[i], "\n");
        }
        // _count equals the +Inf bucket of the same snapshot, as scrapers expect.
        absl::StrAppend(&out, name, "_sum", rendered_labels, " ", FormatValue(histogram.sum()),
                        "\n", name, "_count", rendered_labels, " ", counts.back(), "\n");
      }
    }
  }
  return out;
}

}  // namespace pixtral::metrics
