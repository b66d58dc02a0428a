// UTF-8 checks shared by the tokenizer and the streaming detokenizer.
//
// Text arriving from clients must be valid UTF-8 before it is tokenized; token bytes leaving the
// model need not be (a token may hold half of a character), so decoding repairs them the way
// Python's `bytes.decode("utf-8", errors="replace")` does, which is what mistral_common returns:
// each maximal ill-formed subsequence becomes one U+FFFD.
//
//   if (size_t bad = FindInvalidUtf8(text); bad != absl::string_view::npos) { ... }
//   std::string shown;
//   AppendUtf8Replacing(token_bytes, &shown);
#ifndef PIXTRAL_COMMON_UTF8_H_
#define PIXTRAL_COMMON_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace pixtral {

// The offset of the first byte that is not part of a well-formed UTF-8 character (surrogates
// and overlong forms are ill-formed), or npos if `text` is valid UTF-8.
size_t FindInvalidUtf8(absl::string_view text);

// Appends `bytes` to `out`, replacing each maximal ill-formed subsequence with U+FFFD.
void AppendUtf8Replacing(absl::string_view bytes, std::string* out);

// The length of the longest suffix of `bytes` that is a proper prefix of some well-formed
// character (0 to 3): the bytes a streaming decoder must hold back until more arrive.
size_t IncompleteUtf8SuffixLength(absl::string_view bytes);

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_UTF8_H_
