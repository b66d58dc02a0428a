// pixtral_eval SUBCOMMAND [flags]: runs the project's code on files, for comparison with
// reference implementations. See tools/eval_commands.h for the subcommands.

#include <cstring>
#include <iostream>

#include "tools/eval_commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(int argc, const char* const* argv);
  const char* usage;
};

constexpr Command kCommands[] = {
    {"forward", pixtral::EvalForward,
     "--model DIR --inputs IN.safetensors --out OUT.safetensors [--backend cpu]"},
    {"generate", pixtral::EvalGenerate,
     "--model DIR --inputs IN.safetensors --max-tokens N [--temperature T] [--top-p P] "
     "[--seed S] [--ignore-eos] [--eos-id ID] [--backend cpu]"},
};

int Usage() {
  std::cerr << "usage:\n";
  for (const Command& c : kCommands)
    std::cerr << "  pixtral_eval " << c.name << " " << c.usage << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) == 0) return c.run(argc - 2, argv + 2);
  }
  std::cerr << "pixtral_eval: unknown subcommand \"" << argv[1] << "\"\n";
  return Usage();
}
