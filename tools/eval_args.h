// Command-line arguments of one pixtral_eval subcommand: "--name value", "--name=value" and
// boolean "--name" switches, checked against the names the subcommand accepts; and the way every
// subcommand reports an error.
//
//   absl::StatusOr<EvalArgs> args = EvalArgs::Parse(argv, {"model", "max-tokens"}, {"ignore-eos"});
//   if (!args.ok()) return ReportUsageError("generate", args.status());
//   std::string model = args->Get("model");                 // "" if absent
//   absl::StatusOr<int> max_tokens = args->GetInt("max-tokens", 16);
//   bool ignore_eos = args->Has("ignore-eos");
#ifndef PIXTRAL_TOOLS_EVAL_ARGS_H_
#define PIXTRAL_TOOLS_EVAL_ARGS_H_

#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pixtral {

class EvalArgs {
 public:
  // `args` are the arguments after the subcommand's name. Unknown names, a valued flag
  // without a value, a value given to a switch and positional arguments are INVALID_ARGUMENT.
  static absl::StatusOr<EvalArgs> Parse(const std::vector<std::string>& args,
                                        const std::set<std::string>& valued,
                                        const std::set<std::string>& switches);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;

  // INVALID_ARGUMENT naming the first absent flag.
  absl::Status Require(const std::set<std::string>& names) const;

  // The flag's value as an `Int`; `fallback` if absent, INVALID_ARGUMENT if it is not an integer
  // or does not fit in an `Int`.
  template <typename Int>
  absl::StatusOr<Int> GetInt(const std::string& name, Int fallback) const;
  // The flag's value as a number; `fallback` if absent, INVALID_ARGUMENT if malformed.
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

// Print "pixtral_eval COMMAND: ..." on stderr and return the subcommand's exit code: 2 for a
// command line it cannot use, 1 for a failure while it runs.
int ReportUsageError(absl::string_view command, const absl::Status& status);
int ReportFailure(absl::string_view command, const absl::Status& status);

template <typename Int>
absl::StatusOr<Int> EvalArgs::GetInt(const std::string& name, Int fallback) const {
  if (!Has(name)) return fallback;
  Int value;
  if (!absl::SimpleAtoi(Get(name), &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be an integer in [", std::numeric_limits<Int>::min(), ", ",
                     std::numeric_limits<Int>::max(), "], got \"", Get(name), "\""));
  }
  return value;
}

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_EVAL_ARGS_H_
