#include "services/gateway/completion_text.h"

#include <memory>
#include <string>
#include <vector>

#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

class CompletionTextTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tekken = TekkenTokenizer::FromFile("tests/data/generated/tekken.json");
    ASSERT_TRUE(tekken.ok()) << tekken.status();
    tekken_ = tekken->release();
  }

  std::vector<int> Ids(const std::string& text) {
    return *tekken_->Encode(text, /*bos=*/false, /*eos=*/false);
  }

  // Feeds `text`'s tokens one by one; returns the chunks (the last from Finish()).
  std::vector<std::string> Stream(const std::string& text, std::vector<std::string> stops,
                                  bool* stopped = nullptr) {
    CompletionText completion(*tekken_, std::move(stops));
    std::vector<std::string> chunks;
    for (int id : Ids(text)) {
      absl::StatusOr<std::string> chunk = completion.Add(id);
      EXPECT_TRUE(chunk.ok());
      chunks.push_back(*chunk);
    }
    chunks.push_back(completion.Finish());
    if (stopped != nullptr) *stopped = completion.stopped();
    return chunks;
  }

  static std::string Join(const std::vector<std::string>& chunks) {
    std::string all;
    for (const std::string& c : chunks) all += c;
    return all;
  }

  static const TekkenTokenizer* tekken_;
};

const TekkenTokenizer* CompletionTextTest::tekken_ = nullptr;

TEST_F(CompletionTextTest, EveryChunkIsValidUtf8AndTheyJoinToTheText) {
  // Emoji and CJK split across byte-level tokens.
  const std::string text = "Le chat 🐈‍⬛ dort. 猫は寝ている。 Ünïcödé ✓";
  const std::vector<std::string> chunks = Stream(text, {});
  for (const std::string& chunk : chunks) {
    EXPECT_EQ(FindInvalidUtf8(chunk), std::string::npos) << chunk;
  }
  EXPECT_EQ(Join(chunks), text);
}

TEST_F(CompletionTextTest, StopStringIsCutAndNeverShown) {
  bool stopped = false;
  const std::vector<std::string> chunks =
      Stream("The answer is 42.\n\nNext question", {"\n\n"}, &stopped);
  EXPECT_TRUE(stopped);
  EXPECT_EQ(Join(chunks), "The answer is 42.");
}

TEST_F(CompletionTextTest, TextThatMightStartAStopIsHeldBack) {
  CompletionText completion(*tekken_, {"STOP NOW"});
  std::string shown;
  for (int id : Ids("wait STOP")) shown += *completion.Add(id);
  EXPECT_EQ(shown.find("STOP"), std::string::npos) << shown;  // could still become "STOP NOW"
  for (int id : Ids(" later")) shown += *completion.Add(id);
  shown += completion.Finish();
  EXPECT_EQ(shown, "wait STOP later");
  EXPECT_FALSE(completion.stopped());
}

TEST_F(CompletionTextTest, EarliestOfSeveralStopsWins) {
  EXPECT_EQ(Join(Stream("alpha beta gamma", {"gamma", "beta"})), "alpha ");
}

TEST_F(CompletionTextTest, SpecialTokensAreNotShown) {
  CompletionText completion(*tekken_, {});
  std::string shown = *completion.Add(tekken_->eos_id());
  for (int id : Ids("ok")) shown += *completion.Add(id);
  EXPECT_EQ(shown + completion.Finish(), "ok");
}

TEST_F(CompletionTextTest, BadStopStringsAreRejected) {
  EXPECT_TRUE(ValidateStopStrings({"a", "\n\n"}).ok());
  EXPECT_THAT(ValidateStopStrings({""}).message(), HasSubstr("1 to"));
  EXPECT_THAT(ValidateStopStrings({std::string(kMaxStopStringBytes + 1, 'x')}).message(),
              HasSubstr("1 to"));
  EXPECT_THAT(ValidateStopStrings({"\xff"}).message(), HasSubstr("UTF-8"));
  EXPECT_THAT(ValidateStopStrings(std::vector<std::string>(kMaxStopStrings + 1, "x")).message(),
              HasSubstr("at most"));
}

}  // namespace
}  // namespace pixtral
