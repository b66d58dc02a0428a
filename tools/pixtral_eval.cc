// pixtral_eval: runs one part of the system on given inputs and writes what it computed, for
// comparison with reference implementations (see the README).
//
//   pixtral_eval preprocess --image cat.png --max-image-size 1024 --out pixels.safetensors
//   pixtral_eval forward --model DIR --inputs in.safetensors --out logits.safetensors
//   pixtral_eval generate --model DIR --inputs in.safetensors --max-tokens 12 --ignore-eos
//   pixtral_eval tokenize --tokenizer tekken.json < texts.jsonl > ids.jsonl
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/eval_commands.h"

namespace {

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>& args);
};

constexpr Command kCommands[] = {
    {"preprocess", pixtral::RunPreprocess},
    {"forward", pixtral::RunForward},
    {"generate", pixtral::RunGenerate},
    {"tokenize", pixtral::RunTokenize},
};

int Usage() {
  std::fprintf(stderr, "usage: pixtral_eval COMMAND [ARGS...]\ncommands:");
  for (const Command& command : kCommands) std::fprintf(stderr, " %s", command.name);
  std::fprintf(stderr, "\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  for (const Command& command : kCommands) {
    if (std::strcmp(argv[1], command.name) == 0) {
      return command.run(std::vector<std::string>(argv + 2, argv + argc));
    }
  }
  return Usage();
}
