// The subcommands of pixtral_eval, the harness that checks this project against reference
// implementations. Each takes the arguments after its name and returns the process exit code,
// printing errors to stderr.
#ifndef PIXTRAL_TOOLS_EVAL_COMMANDS_H_
#define PIXTRAL_TOOLS_EVAL_COMMANDS_H_

#include <string>
#include <vector>

namespace pixtral {

// preprocess --image FILE|URL --max-image-size N [--patch-size P] --out OUT.safetensors
// Writes tensor "pixels" (F32 [3, H, W]) as mistral_common's ImageEncoder makes it, and prints
// {"height": H, "width": W, "rows": R, "cols": C} on stdout.
int RunPreprocess(const std::vector<std::string>& args);

// tokenize --tokenizer PATH: JSON lines {"text": ...} on stdin, {"ids": [...]} lines on stdout
// (raw encoding, no BOS/EOS).
int RunTokenize(const std::vector<std::string>& args);

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_EVAL_COMMANDS_H_
