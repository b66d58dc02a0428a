// --help and --version for every Pixtral binary. Abseil's own --help lists only the flags of a
// source file named like the binary (so `mistral-chat --help` printed "No flags matched") and
// exits 1; HandleHelpAndVersion lists the program's flags (abseil's own left out) after its usage
// line and exits 0. --helpfull stays abseil's (every flag, tools parse it).
//
//   int main(int argc, char** argv) {
//     absl::SetProgramUsageMessage("Serves ...\n  gateway_server --model_dir=DIR --port=8000");
//     pixtral::HandleHelpAndVersion(argc, argv);   // may exit(0)
//     absl::ParseCommandLine(argc, argv);
#ifndef PIXTRAL_SERVICES_COMMON_COMMAND_LINE_H_
#define PIXTRAL_SERVICES_COMMON_COMMAND_LINE_H_

#include <ostream>

namespace pixtral {

// The version --version prints, for every binary of this repository.
inline constexpr char kPixtralServingVersion[] = "0.1.0";

// Sets what --version prints ("<program> (pixtral-serving 0.1.0)"). If the arguments hold
// --help, -help, -h or --helpshort, prints the usage message and the program's flags to stdout
// and exits 0.
void HandleHelpAndVersion(int argc, char** argv);

// What --help prints: absl::ProgramUsageMessage(), then each non-abseil flag with its help and
// default, sorted by name.
void PrintHelp(std::ostream& out);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_COMMAND_LINE_H_
