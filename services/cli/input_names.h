// Errors about a chat's content, worded for the person who typed it. The chat encoder names the
// place of a bad chunk as the request holds it ("message 2, chunk 1: cannot decode image");
// mistral-chat knows what the person typed there (an image path, the text of a turn) and says
// that instead:
//
//   InputNames names;
//   names.AddTurn({"the text of turn 1", "image \"cat.png\" of turn 1"});
//   names.AddAnswer();
//   NameTheInput(status, names);   // INVALID_ARGUMENT: image "cat.png" of turn 1: cannot decode
#ifndef PIXTRAL_SERVICES_CLI_INPUT_NAMES_H_
#define PIXTRAL_SERVICES_CLI_INPUT_NAMES_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace pixtral {

// What each message and chunk of the conversation was, as typed.
class InputNames {
 public:
  // A user message; `chunks` names its chunks in order.
  void AddTurn(std::vector<std::string> chunks) { messages_.push_back(std::move(chunks)); }
  // An assistant message (the model's answer).
  void AddAnswer() { messages_.push_back({}); }
  void RemoveLast() { messages_.pop_back(); }

  // The name of chunk `chunk` of message `message`, or empty if unknown.
  std::string Name(size_t message, size_t chunk) const;

 private:
  std::vector<std::vector<std::string>> messages_;
};

// `status` with a leading "message M, chunk C: " replaced by the chunk's name; other statuses
// unchanged.
absl::Status NameTheInput(const absl::Status& status, const InputNames& names);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_CLI_INPUT_NAMES_H_
