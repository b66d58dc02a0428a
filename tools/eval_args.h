// Command-line arguments of one pixtral_eval subcommand: "--name value", "--name=value" and
// boolean "--name" switches, checked against the names the subcommand accepts.
//
//   absl::StatusOr<EvalArgs> args = EvalArgs::Parse(args_after_name, {"model", "inputs"},
//   {"ignore-eos"}); std::string model = args->Get("model");          // "" if absent bool
//   ignore_eos = args->Has("ignore-eos");
#ifndef PIXTRAL_TOOLS_EVAL_ARGS_H_
#define PIXTRAL_TOOLS_EVAL_ARGS_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

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

  // The flag's value as a number; `fallback` if absent, INVALID_ARGUMENT if malformed.
  absl::StatusOr<int64_t> GetInt(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> GetDouble(const std::string& name, double fallback) const;

 private:
  std::map<std::string, std::string> values_;
};

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_EVAL_ARGS_H_
