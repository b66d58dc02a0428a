#include "services/common/command_line.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pixtral {
namespace {

bool IsAbseilsOwn(const absl::CommandLineFlag& flag) {
  const std::string file = flag.Filename();
  return absl::StartsWith(file, "absl/") || absl::StrContains(file, "/absl/");
}

}  // namespace

void PrintHelp(std::ostream& out) {
  out << absl::ProgramUsageMessage() << "\n\nFlags:\n";
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!IsAbseilsOwn(*flag)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  for (const absl::CommandLineFlag* flag : flags) {
    out << "    --" << flag->Name() << " (" << flag->Help() << "); default: \""
        << flag->DefaultValue() << "\";\n";
  }
  out << "\n    --help: this list; --helpfull: every flag; --version: the version.\n";
}

void HandleHelpAndVersion(int argc, char** argv) {
  absl::FlagsUsageConfig config;
  const std::string program = argc > 0 ? argv[0] : "pixtral";
  config.version_string = [name = program.substr(program.find_last_of('/') + 1)] {
    return absl::StrCat(name, " (pixtral-serving ", kPixtralServingVersion, ")\n");
  };
  absl::SetFlagsUsageConfig(config);
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-help" || arg == "-h" || arg == "--helpshort" ||
        arg == "-helpshort") {
      PrintHelp(std::cout);
      std::exit(0);
    }
  }
}

}  // namespace pixtral
