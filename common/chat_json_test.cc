#include "common/chat_json.h"

#include <string>

#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ordered_json = nlohmann::ordered_json;

// Expected strings are what Python 3.11's json.dumps(value, ensure_ascii=False) printed.
TEST(PythonJsonDumps, MatchesPythonsSeparatorsEscapesAndKeyOrder) {
  const ordered_json value = ordered_json::parse(
      "{\"b\": [1, 2.5, true, null, \"\xC3\xA9\xE2\x80\xA8\\u0001\\\"\\\\\\n\\t\"], "
      "\"a\": {\"x\": 1e-05, \"y\": 100.0, \"z\": 1.5e300, \"n\": -7}}");
  EXPECT_EQ(PythonJsonDumps(value),
            "{\"b\": [1, 2.5, true, null, \"\xC3\xA9\xE2\x80\xA8\\u0001\\\"\\\\\\n\\t\"], "
            "\"a\": {\"x\": 1e-05, \"y\": 100.0, \"z\": 1.5e+300, \"n\": -7}}");
  EXPECT_EQ(PythonJsonDumps(ordered_json::object()), "{}");
  EXPECT_EQ(PythonJsonDumps(ordered_json::array()), "[]");
  EXPECT_EQ(PythonJsonDumps(ordered_json("\x1f\b\f\r")), "\"\\u001f\\b\\f\\r\"");
}

TEST(JsonOrString, ParsesJsonAndKeepsOtherTextAsAString) {
  EXPECT_EQ(JsonOrString("{\"x\":1}"), ordered_json({{"x", 1}}));
  EXPECT_EQ(JsonOrString(" 42 "), ordered_json(42));
  EXPECT_EQ(JsonOrString("sunny, 20C"), ordered_json("sunny, 20C"));
  EXPECT_EQ(JsonOrString("{\"x\":"), ordered_json("{\"x\":"));
  const std::string deep = std::string(1000, '[') + std::string(1000, ']');
  EXPECT_EQ(JsonOrString(deep), ordered_json(deep));
}

}  // namespace
}  // namespace pixtral
