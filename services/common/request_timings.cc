#include "services/common/request_timings.h"

#include <cmath>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace pixtral {
namespace {

constexpr int kMaxEntries = 64;
constexpr size_t kMaxNameBytes = 64;

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.') return false;
  }
  return true;
}

}  // namespace

void RequestTimings::Add(absl::string_view name, double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  values_[std::string(name)] += value;
}

std::map<std::string, double> ParseTimingHeader(absl::string_view header) {
  std::map<std::string, double> values;
  int entries = 0;
  for (absl::string_view entry : absl::StrSplit(header, ';', absl::SkipEmpty())) {
    if (++entries > kMaxEntries) break;
    std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(entry, '=');
    double value = 0;
    if (!ValidName(kv.first) || !absl::SimpleAtod(kv.second, &value) || !std::isfinite(value)) {
      continue;
    }
    values[std::string(kv.first)] += value;
  }
  return values;
}

void RequestTimings::Merge(absl::string_view prefix, absl::string_view header) {
  for (const auto& [name, value] : ParseTimingHeader(header)) {
    Add(absl::StrCat(prefix, name), value);
  }
}

std::string RequestTimings::ToHeader() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return absl::StrJoin(values_, ";", [](std::string* out, const auto& kv) {
    absl::StrAppendFormat(out, "%s=%.9g", kv.first, kv.second);
  });
}

std::map<std::string, double> RequestTimings::values() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return values_;
}

}  // namespace pixtral
