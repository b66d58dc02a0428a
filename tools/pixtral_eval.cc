// pixtral_eval SUBCOMMAND [ARGS...]: runs one of the reference-check subcommands declared in
// tools/eval_commands.h.
#include <iostream>
#include <string>
#include <vector>

#include "tools/eval_commands.h"

namespace {

struct Subcommand {
  const char* name;
  int (*run)(const std::vector<std::string>& args);
  const char* usage;
};

constexpr Subcommand kSubcommands[] = {
    {"tokenize", pixtral::RunTokenize,
     "tokenize --tokenizer PATH  < {\"text\": ...} lines  > {\"ids\": [...]} lines"},
};

int Usage() {
  std::cerr << "usage: pixtral_eval SUBCOMMAND [ARGS...]\n";
  for (const Subcommand& command : kSubcommands)
    std::cerr << "  pixtral_eval " << command.usage << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  const std::string name = argv[1];
  for (const Subcommand& command : kSubcommands) {
    if (name == command.name) return command.run(std::vector<std::string>(argv + 2, argv + argc));
  }
  std::cerr << "pixtral_eval: unknown subcommand \"" << name << "\"\n";
  return Usage();
}
