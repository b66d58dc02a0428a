#include "services/cli/input_names.h"

#include "gtest/gtest.h"

namespace pixtral {
namespace {

InputNames TwoTurns() {
  InputNames names;
  names.AddTurn({"the text of turn 1"});
  names.AddAnswer();
  names.AddTurn({"the text of turn 2", "image \"cat.png\" of turn 2"});
  return names;
}

TEST(NameTheInput, NamesTheChunkAsTyped) {
  const absl::Status named = NameTheInput(
      absl::InvalidArgumentError("message 2, chunk 1: cannot decode the image"), TwoTurns());
  EXPECT_EQ(named,
            absl::InvalidArgumentError("image \"cat.png\" of turn 2: cannot decode the image"));
}

TEST(NameTheInput, LeavesOtherErrorsAlone) {
  for (const absl::Status& status :
       {absl::InvalidArgumentError("the prompt has 9 tokens"),
        absl::InvalidArgumentError("message 7, chunk 0: unknown place"),
        absl::InvalidArgumentError("message x, chunk 0: not a number"),
        absl::UnavailableError("message 0: no chunk")}) {
    EXPECT_EQ(NameTheInput(status, TwoTurns()), status);
  }
}

}  // namespace
}  // namespace pixtral
