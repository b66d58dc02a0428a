// pixtral_eval tokenize: raw tekken encoding of JSON lines, for comparison with mistral_common or
// the npm reference tokenizer.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/tekken.h"
#include "nlohmann/json.hpp"
#include "tools/eval_args.h"
#include "tools/eval_commands.h"

namespace pixtral {
namespace {

// One {"ids": [...]} line on `out` for each {"text": ...} line of `in`; errors name the line.
absl::Status TokenizeLines(const TekkenTokenizer& tekken, std::istream& in, std::ostream& out) {
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const nlohmann::json input = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto text = input.is_object() ? input.find("text") : input.end();
    if (input.is_discarded() || !input.is_object() || text == input.end() || !text->is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", number, ": expected a JSON object with a string \"text\""));
    }
    absl::StatusOr<std::vector<int>> ids =
        tekken.Encode(text->get_ref<const std::string&>(), /*bos=*/false, /*eos=*/false);
    if (!ids.ok()) {
      return absl::Status(ids.status().code(),
                          absl::StrCat("line ", number, ": ", ids.status().message()));
    }
    out << nlohmann::json{{"ids", *ids}}.dump() << "\n";
  }
  return absl::OkStatus();
}

}  // namespace

int RunTokenize(const std::vector<std::string>& argv) {
  constexpr char kCommand[] = "tokenize";
  absl::StatusOr<EvalArgs> args = EvalArgs::Parse(argv, {"tokenizer"}, {});
  if (!args.ok()) return ReportUsageError(kCommand, args.status());
  if (absl::Status s = args->Require({"tokenizer"}); !s.ok()) return ReportUsageError(kCommand, s);
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken =
      TekkenTokenizer::FromFile(args->Get("tokenizer"));
  if (!tekken.ok()) return ReportFailure(kCommand, tekken.status());
  if (absl::Status s = TokenizeLines(**tekken, std::cin, std::cout); !s.ok()) {
    return ReportFailure(kCommand, s);
  }
  return 0;
}

}  // namespace pixtral
