#include "services/cli/input_names.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace pixtral {

std::string InputNames::Name(size_t message, size_t chunk) const {
  if (message >= messages_.size() || chunk >= messages_[message].size()) return "";
  return messages_[message][chunk];
}

absl::Status NameTheInput(const absl::Status& status, const InputNames& names) {
  absl::string_view text = status.message();
  if (!absl::ConsumePrefix(&text, "message ")) return status;
  const size_t comma = text.find(", chunk ");
  if (comma == absl::string_view::npos) return status;
  size_t message = 0, chunk = 0;
  if (!absl::SimpleAtoi(text.substr(0, comma), &message)) return status;
  text.remove_prefix(comma + 8);
  const size_t colon = text.find(": ");
  if (colon == absl::string_view::npos || !absl::SimpleAtoi(text.substr(0, colon), &chunk)) {
    return status;
  }
  const std::string name = names.Name(message, chunk);
  if (name.empty()) return status;
  return absl::Status(status.code(), absl::StrCat(name, ": ", text.substr(colon + 2)));
}

}  // namespace pixtral
