#include "services/gateway/completion_text.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/utf8.h"

namespace pixtral {

absl::Status ValidateStopTokenIds(const std::vector<int32_t>& ids) {
  if (ids.size() > kMaxStopTokenIds) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxStopTokenIds, " stop token ids, got ", ids.size()));
  }
  for (int32_t id : ids) {
    if (id < 0) return absl::InvalidArgumentError("stop token ids must be >= 0");
  }
  return absl::OkStatus();
}

absl::Status ValidateStopStrings(const std::vector<std::string>& stops) {
  if (stops.size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxStopStrings, " stop strings, got ", stops.size()));
  }
  for (const std::string& stop : stops) {
    if (stop.empty() || stop.size() > kMaxStopStringBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop strings must be 1 to ", kMaxStopStringBytes, " bytes"));
    }
    if (FindInvalidUtf8(stop) != absl::string_view::npos) {
      return absl::InvalidArgumentError("a stop string is not valid UTF-8");
    }
  }
  return absl::OkStatus();
}

CompletionText::CompletionText(const TekkenTokenizer& tokenizer, std::vector<std::string> stops)
    : decoder_(tokenizer, SpecialTokenPolicy::kIgnore), stops_(std::move(stops)) {}

absl::StatusOr<std::string> CompletionText::Add(int id) {
  if (stopped_) return std::string();
  absl::StatusOr<std::string> chunk = decoder_.Add(id);
  if (!chunk.ok()) return chunk.status();
  held_ += *chunk;

  size_t first_stop = std::string::npos;
  for (const std::string& stop : stops_) first_stop = std::min(first_stop, held_.find(stop));
  if (first_stop != std::string::npos) {
    std::string shown = held_.substr(0, first_stop);
    held_.clear();
    stopped_ = true;
    return shown;
  }
  // Hold back the longest tail of the text that some stop string starts with.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    for (size_t n = std::min(stop.size() - 1, held_.size()); n > hold; --n) {
      if (held_.compare(held_.size() - n, n, stop, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string shown = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return shown;
}

std::string CompletionText::Finish() {
  if (stopped_) return std::string();
  std::string rest = held_ + decoder_.Finish();
  held_.clear();
  return rest;
}

}  // namespace pixtral
