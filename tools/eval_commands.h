// The subcommands of pixtral_eval, the command-line harness that checks this project's pieces
// against reference implementations. Each takes the arguments after its name and returns the
// process exit code; pixtral_eval.cc maps names to these functions.
#ifndef PIXTRAL_TOOLS_EVAL_COMMANDS_H_
#define PIXTRAL_TOOLS_EVAL_COMMANDS_H_

#include <string>
#include <vector>

namespace pixtral {

// tokenize --tokenizer PATH: JSON lines {"text": ...} on stdin, {"ids": [...]} lines on stdout
// (raw encoding, no BOS/EOS).
int RunTokenize(const std::vector<std::string>& args);

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_EVAL_COMMANDS_H_
