#include "tools/eval_args.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pixtral {

absl::StatusOr<EvalArgs> EvalArgs::Parse(const std::vector<std::string>& argv,
                                         const std::set<std::string>& valued,
                                         const std::set<std::string>& switches) {
  EvalArgs args;
  for (size_t i = 0; i < argv.size(); ++i) {
    std::string arg = argv[i];
    if (!absl::StartsWith(arg, "--")) {
      return absl::InvalidArgumentError(absl::StrCat("unexpected argument \"", arg, "\""));
    }
    arg = arg.substr(2);
    std::string value;
    const size_t eq = arg.find('=');
    const bool inline_value = eq != std::string::npos;
    if (inline_value) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    }
    if (switches.count(arg) > 0) {
      if (inline_value) {
        return absl::InvalidArgumentError(absl::StrCat("--", arg, " takes no value"));
      }
    } else if (valued.count(arg) > 0) {
      if (!inline_value) {
        if (i + 1 >= argv.size())
          return absl::InvalidArgumentError(absl::StrCat("--", arg, " needs a value"));
        value = argv[++i];
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", arg));
    }
    args.values_[arg] = value;
  }
  return args;
}

std::string EvalArgs::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() ? fallback : it->second;
}

absl::Status EvalArgs::Require(const std::set<std::string>& names) const {
  for (const std::string& name : names) {
    if (!Has(name)) return absl::InvalidArgumentError(absl::StrCat("--", name, " is required"));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> EvalArgs::GetDouble(const std::string& name, double fallback) const {
  if (!Has(name)) return fallback;
  double value;
  if (!absl::SimpleAtod(Get(name), &value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " must be a number, got \"", Get(name), "\""));
  }
  return value;
}

int ReportUsageError(absl::string_view command, const absl::Status& status) {
  std::cerr << "pixtral_eval " << command << ": " << status.message() << "\n";
  return 2;
}

int ReportFailure(absl::string_view command, const absl::Status& status) {
  std::cerr << "pixtral_eval " << command << ": " << status << "\n";
  return 1;
}

}  // namespace pixtral
