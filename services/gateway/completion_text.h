// Generated token ids to the text a client sees, chunk by chunk: valid UTF-8 at every chunk, and
// cut before the first stop string, which is never shown. Text that might be the start of a stop
// string is held back until the next tokens show whether it is.
//
//   CompletionText text(tekken, {"\n\n", "###"});
//   for (int id : tokens) {
//     absl::StatusOr<std::string> delta = text.Add(id);   // send *delta (may be empty)
//     if (text.stopped()) break;                           // a stop string appeared
//   }
//   send(text.Finish());
#ifndef PIXTRAL_SERVICES_GATEWAY_COMPLETION_TEXT_H_
#define PIXTRAL_SERVICES_GATEWAY_COMPLETION_TEXT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tekken.h"

namespace pixtral {

// Limits on client-supplied stop strings.
inline constexpr int kMaxStopStrings = 16;
inline constexpr int kMaxStopStringBytes = 256;
// Each generated token is checked against every stop id: a bound on per-step work.
inline constexpr int kMaxStopTokenIds = 64;

// INVALID_ARGUMENT for too many stop strings, or one that is empty, too long or not UTF-8.
absl::Status ValidateStopStrings(const std::vector<std::string>& stops);
// At most kMaxStopTokenIds ids, none negative.
absl::Status ValidateStopTokenIds(const std::vector<int32_t>& ids);

class CompletionText {
 public:
  // `tokenizer` must outlive this object; `stops` must have passed ValidateStopStrings.
  CompletionText(const TekkenTokenizer& tokenizer, std::vector<std::string> stops);

  // The text that can be shown now. After a stop string appeared, stopped() is true and further
  // tokens add nothing.
  absl::StatusOr<std::string> Add(int id);

  // The held-back text, unless a stop string cut it off.
  std::string Finish();

  bool stopped() const { return stopped_; }

 private:
  TekkenStreamDecoder decoder_;
  std::vector<std::string> stops_;
  std::string held_;  // decoded text not shown yet: a possible start of a stop string
  bool stopped_ = false;
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_COMPLETION_TEXT_H_
