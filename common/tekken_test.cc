#include "common/tekken.h"

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace pixtral {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kTekkenPath[] = "tests/data/generated/tekken.json";
constexpr char kVectorsPath[] = "tests/data/tokenizer_vectors.jsonl";

const TekkenTokenizer& Tekken() {
  static const TekkenTokenizer* tekken = [] {
    absl::StatusOr<std::unique_ptr<TekkenTokenizer>> loaded =
        TekkenTokenizer::FromFile(kTekkenPath);
    if (!loaded.ok()) {
      ADD_FAILURE() << loaded.status() << " (run tools/setup.sh to write it)";
      std::abort();
    }
    return loaded->release();
  }();
  return *tekken;
}

struct Vector {
  std::string text;
  std::vector<int> ids;
};

std::vector<Vector> LoadVectors() {
  std::ifstream file(kVectorsPath);
  std::vector<Vector> vectors;
  std::string line;
  while (std::getline(file, line)) {
    const Json entry = Json::parse(line);
    vectors.push_back({entry["text"].get<std::string>(), entry["ids"].get<std::vector<int>>()});
  }
  return vectors;
}

std::vector<int> EncodeOrDie(absl::string_view text) {
  absl::StatusOr<std::vector<int>> ids = Tekken().Encode(text, false, false);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int>{};
}

std::vector<int> Concat(std::initializer_list<std::vector<int>> parts) {
  std::vector<int> all;
  for (const auto& part : parts) all.insert(all.end(), part.begin(), part.end());
  return all;
}

// A small valid tekken.json: the 256 byte tokens plus `extra` merged tokens.
Json TinyTekken(const std::vector<std::string>& extra = {"ab", "abc"}) {
  Json vocab = Json::array();
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, static_cast<char>(b)));
  tokens.insert(tokens.end(), extra.begin(), extra.end());
  for (size_t r = 0; r < tokens.size(); ++r) {
    vocab.push_back(
        {{"rank", r}, {"token_bytes", absl::Base64Escape(tokens[r])}, {"token_str", nullptr}});
  }
  return {{"config",
           {{"pattern", "\\p{L}+|\\s+|."},
            {"num_vocab_tokens", tokens.size()},
            {"default_vocab_size", tokens.size() + 100},
            {"default_num_special_tokens", 100},
            {"version", "v3"}}},
          {"vocab", vocab}};
}

absl::Status LoadStatus(const Json& json) {
  return TekkenTokenizer::FromJson(json.dump()).status();
}

TEST(TekkenTest, MatchesTheNpmReferenceOnEveryVector) {
  const std::vector<Vector> vectors = LoadVectors();
  ASSERT_GE(vectors.size(), 400u);
  for (const Vector& vector : vectors) {
    EXPECT_EQ(EncodeOrDie(vector.text), vector.ids) << "text: " << vector.text;
  }
}

TEST(TekkenTest, DecodeInvertsEncodeOnEveryVector) {
  for (const Vector& vector : LoadVectors()) {
    absl::StatusOr<std::string> text = Tekken().Decode(vector.ids, SpecialTokenPolicy::kRaise);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_EQ(*text, vector.text);
  }
}

TEST(TekkenTest, HasMistralCommonsControlTokens) {
  const TekkenTokenizer& tekken = Tekken();
  EXPECT_EQ(tekken.vocab_size(), 131072);
  EXPECT_EQ(tekken.num_special_tokens(), 1000);
  EXPECT_EQ(tekken.bos_id(), 1);
  EXPECT_EQ(tekken.eos_id(), 2);
  EXPECT_EQ(*tekken.SpecialTokenId("<unk>"), 0);
  EXPECT_EQ(*tekken.SpecialTokenId("[INST]"), 3);
  EXPECT_EQ(*tekken.SpecialTokenId("[/INST]"), 4);
  EXPECT_EQ(*tekken.SpecialTokenId("[IMG]"), 10);
  EXPECT_EQ(*tekken.SpecialTokenId("<pad>"), 11);
  EXPECT_EQ(*tekken.SpecialTokenId("[IMG_BREAK]"), 12);
  EXPECT_EQ(*tekken.SpecialTokenId("[IMG_END]"), 13);
  EXPECT_EQ(*tekken.SpecialTokenId("[SYSTEM_PROMPT]"), 17);
  EXPECT_EQ(*tekken.SpecialTokenId("[TOOL_CONTENT]"), 19);
  EXPECT_EQ(*tekken.SpecialTokenId("<SPECIAL_20>"), 20);
  EXPECT_EQ(*tekken.SpecialTokenId("<SPECIAL_999>"), 999);
  EXPECT_EQ(tekken.SpecialTokenId("[THINK]").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(tekken.version(), "v3");
  ASSERT_TRUE(tekken.image_config().has_value());
  EXPECT_EQ(tekken.image_config()->image_patch_size, 16);
  EXPECT_EQ(tekken.image_config()->max_image_size, 1024);
  EXPECT_EQ(tekken.image_config()->spatial_merge_size, 1);
}

TEST(TekkenTest, TextIdsAreRankPlusSpecialCount) {
  // Ranks 0..255 are the bytes themselves.
  EXPECT_THAT(EncodeOrDie("\x01"), ElementsAre(1001));
  EXPECT_EQ(Tekken().TokenBytes(1000 + 'A'), "A");
}

TEST(TekkenTest, AddsBosAndEos) {
  absl::StatusOr<std::vector<int>> ids = Tekken().Encode("a", true, true);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(1, 1097, 2));
  EXPECT_THAT(*Tekken().Encode("", true, false), ElementsAre(1));
}

TEST(TekkenTest, ControlTokenNamesInTextAreOrdinaryText) {
  const std::vector<int> ids = EncodeOrDie("[INST] hi [/INST]</s>");
  for (int id : ids) EXPECT_GE(id, Tekken().num_special_tokens());
  EXPECT_EQ(*Tekken().Decode(ids, SpecialTokenPolicy::kRaise), "[INST] hi [/INST]</s>");
}

TEST(TekkenTest, RejectsInvalidUtf8) {
  absl::StatusOr<std::vector<int>> ids = Tekken().Encode("abc\xFF", false, false);
  EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ids.status().message(), HasSubstr("byte 3"));
  EXPECT_FALSE(Tekken().Encode("\xED\xA0\x80", false, false).ok());  // A UTF-16 surrogate.
}

// tiktoken's `\s` is Unicode White_Space: U+0085 is a space (JavaScript disagrees, which is why the
// npm vectors leave it out), so "\u0085\u0085." splits as whitespace, whitespace, punctuation.
TEST(TekkenTest, NextLineIsWhiteSpaceAsInTiktoken) {
  EXPECT_EQ(EncodeOrDie("\u0085\u0085."),
            Concat({EncodeOrDie("\u0085"), EncodeOrDie("\u0085"), EncodeOrDie(".")}));
}

// Pieces over 64 bytes merge with a heap instead of tiktoken's scan; the npm vectors include
// many such runs, and these tiny vocabularies pin the tie-breaking (leftmost lowest rank first).
TEST(TekkenTest, LongPiecesMergeInTiktokensOrder) {
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> pairs =
      TekkenTokenizer::FromJson(TinyTekken({"aa", "aaaa"}).dump());
  ASSERT_TRUE(pairs.ok()) << pairs.status();
  for (int length : {10, 70}) {
    // Leftmost pairs first: the a's pair up into "aa", the "aa"s into "aaaa", left to right.
    std::vector<int> expected(length / 4, 357);
    if (length % 4 >= 2) expected.push_back(356);
    if (length % 2 == 1) expected.push_back(100 + 'a');
    EXPECT_EQ(*(*pairs)->Encode(std::string(length, 'a'), false, false), expected) << length;
  }
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tri =
      TekkenTokenizer::FromJson(TinyTekken({"bc", "ab", "abc"}).dump());
  ASSERT_TRUE(tri.ok()) << tri.status();
  // "bc" outranks "ab", so every "bc" forms first; then each a + bc pair is the token "abc".
  const std::vector<int> expected(30, 358);
  std::string text;
  for (int i = 0; i < 30; ++i) text += "abc";
  EXPECT_EQ(*(*tri)->Encode(text, false, false), expected);
}

TEST(TekkenTest, HugeSinglePieceEncodesQuickly) {
  // A megabyte without a regex boundary must not take quadratic time.
  const std::string text(1 << 20, 'x');
  absl::StatusOr<std::vector<int>> ids = Tekken().Encode(text, false, false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*Tekken().Decode(*ids, SpecialTokenPolicy::kRaise), text);
}

TEST(TekkenDecodeTest, AppliesTheSpecialTokenPolicy) {
  const std::vector<int> ids = Concat({{1, 3}, EncodeOrDie("hi"), {4}});
  EXPECT_EQ(*Tekken().Decode(ids, SpecialTokenPolicy::kIgnore), "hi");
  EXPECT_EQ(*Tekken().Decode(ids, SpecialTokenPolicy::kKeep), "<s>[INST]hi[/INST]");
  absl::StatusOr<std::string> raised = Tekken().Decode(ids, SpecialTokenPolicy::kRaise);
  EXPECT_EQ(raised.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(raised.status().message(), HasSubstr("<s>"));
}

TEST(TekkenDecodeTest, RejectsIdsOutsideTheVocabulary) {
  EXPECT_EQ(Tekken().Decode({-1}, SpecialTokenPolicy::kKeep).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tekken().Decode({131072}, SpecialTokenPolicy::kKeep).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Tekken().Decode({131071}, SpecialTokenPolicy::kKeep).ok());
}

TEST(TekkenDecodeTest, RepairsBrokenUtf8RunByRun) {
  // "中" is E4 B8 AD; byte tokens are rank = byte value.
  const int e4 = 1000 + 0xE4, b8 = 1000 + 0xB8, ad = 1000 + 0xAD;
  EXPECT_EQ(*Tekken().Decode({e4, b8, ad}, SpecialTokenPolicy::kIgnore), "中");
  EXPECT_EQ(*Tekken().Decode({e4, b8}, SpecialTokenPolicy::kIgnore), "\uFFFD");
  // A control token splits the byte run even when ignored, as in mistral_common.
  EXPECT_EQ(*Tekken().Decode({e4, 3, b8, ad}, SpecialTokenPolicy::kIgnore), "\uFFFD\uFFFD\uFFFD");
}

TEST(TekkenStreamDecoderTest, ChunksAreValidUtf8AndConcatenateToDecode) {
  for (const Vector& vector : LoadVectors()) {
    TekkenStreamDecoder stream(Tekken(), SpecialTokenPolicy::kIgnore);
    std::string joined;
    for (int id : vector.ids) {
      absl::StatusOr<std::string> chunk = stream.Add(id);
      ASSERT_TRUE(chunk.ok()) << chunk.status();
      EXPECT_EQ(FindInvalidUtf8(*chunk), absl::string_view::npos);
      joined += *chunk;
    }
    joined += stream.Finish();
    EXPECT_EQ(joined, vector.text);
  }
}

TEST(TekkenStreamDecoderTest, HoldsBackASplitCharacter) {
  const int f0 = 1000 + 0xF0, x9f = 1000 + 0x9F, x98 = 1000 + 0x98, x80 = 1000 + 0x80;
  TekkenStreamDecoder stream(Tekken(), SpecialTokenPolicy::kKeep);
  EXPECT_EQ(*stream.Add(1000 + 'a'), "a");
  EXPECT_EQ(*stream.Add(f0), "");
  EXPECT_EQ(*stream.Add(x9f), "");
  EXPECT_EQ(*stream.Add(x98), "");
  EXPECT_EQ(*stream.Add(x80), "😀");
  EXPECT_EQ(*stream.Add(f0), "");
  EXPECT_EQ(*stream.Add(2), "\uFFFD</s>");  // Matches Decode({.., F0, </s>}, kKeep).
  EXPECT_EQ(stream.Finish(), "");
}

TEST(TekkenStreamDecoderTest, RejectsBadIdsAndRaisesOnControlTokens) {
  TekkenStreamDecoder stream(Tekken(), SpecialTokenPolicy::kRaise);
  EXPECT_EQ(stream.Add(200000).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(stream.Add(1).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TekkenLoadTest, LoadsATinyFileAndMergesByRank) {
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken =
      TekkenTokenizer::FromJson(TinyTekken().dump());
  ASSERT_TRUE(tekken.ok()) << tekken.status();
  EXPECT_EQ((*tekken)->num_special_tokens(), 100);
  EXPECT_FALSE((*tekken)->image_config().has_value());
  // "abcab": rank 256 = "ab", 257 = "abc".
  EXPECT_THAT(*(*tekken)->Encode("abcab", false, false), ElementsAre(357, 356));
}

TEST(TekkenLoadTest, VocabSizeOptionTruncatesRanks) {
  TekkenTokenizer::Options options;
  options.vocab_size = 100 + 257;  // Keeps "ab", drops "abc".
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken =
      TekkenTokenizer::FromJson(TinyTekken().dump(), options);
  ASSERT_TRUE(tekken.ok()) << tekken.status();
  EXPECT_THAT(*(*tekken)->Encode("abcab", false, false), ElementsAre(356, 100 + 'c', 356));
}

TEST(TekkenLoadTest, ReadsAnExplicitSpecialTokenList) {
  Json json = TinyTekken();
  json["special_tokens"] = Json::array();
  for (const char* name : {"<unk>", "<s>", "</s>", "[INST]"}) {
    json["special_tokens"].push_back(
        {{"rank", json["special_tokens"].size()}, {"token_str", name}, {"is_control", true}});
  }
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken = TekkenTokenizer::FromJson(json.dump());
  ASSERT_TRUE(tekken.ok()) << tekken.status();
  EXPECT_EQ(*(*tekken)->SpecialTokenId("[INST]"), 3);
  EXPECT_EQ(*(*tekken)->SpecialTokenId("<SPECIAL_4>"), 4);
  EXPECT_FALSE((*tekken)->SpecialTokenId("[IMG]").ok());
}

TEST(TekkenLoadTest, RejectsMalformedFiles) {
  auto expect_invalid = [](const Json& json, absl::string_view needle) {
    absl::Status status = LoadStatus(json);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << needle;
    EXPECT_THAT(status.message(), HasSubstr(needle));
  };
  EXPECT_EQ(TekkenTokenizer::FromJson("{\"config\": ").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(TekkenTokenizer::FromJson("[1]").status().message(), HasSubstr("object"));

  Json json = TinyTekken();
  json.erase("config");
  expect_invalid(json, "config");

  json = TinyTekken();
  json["config"]["version"] = "v99";
  expect_invalid(json, "v99");

  json = TinyTekken();
  json["config"]["version"] = "v11";  // Needs an explicit special_tokens list.
  expect_invalid(json, "special_tokens");

  json = TinyTekken();
  json["config"]["default_vocab_size"] = "big";
  expect_invalid(json, "default_vocab_size");

  json = TinyTekken();
  json["config"]["default_vocab_size"] = 90;
  expect_invalid(json, "no room");

  json = TinyTekken();
  json["config"]["default_vocab_size"] = 100000;
  expect_invalid(json, "fewer than");

  json = TinyTekken();
  json["vocab"][256]["token_bytes"] = "not base64!";
  expect_invalid(json, "vocab[256].token_bytes");

  json = TinyTekken();
  json["vocab"][257]["rank"] = 300;
  expect_invalid(json, "vocab[257].rank");

  json = TinyTekken({"ab", "ab"});
  expect_invalid(json, "repeats the bytes");

  json = TinyTekken();
  json["vocab"][65]["token_bytes"] = absl::Base64Escape("B");
  expect_invalid(json, "single byte 65");

  json = TinyTekken();
  json["config"]["pattern"] = "(unclosed";
  expect_invalid(json, "pattern");

  json = TinyTekken();
  json["image"] = {{"image_patch_size", 0}, {"max_image_size", 1024}};
  expect_invalid(json, "image_patch_size");

  json = TinyTekken();
  json["special_tokens"] = {{{"rank", 0}, {"token_str", "<s>"}},
                            {{"rank", 1}, {"token_str", "<s>"}}};
  expect_invalid(json, "twice");

  EXPECT_EQ(TekkenTokenizer::FromFile("/nonexistent/tekken.json").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pixtral
