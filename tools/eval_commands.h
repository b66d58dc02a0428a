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

// forward --model DIR --inputs IN.safetensors --out OUT.safetensors [--backend cpu]
// IN holds input_ids (I64 [S]) and pixel_values_0, pixel_values_1, ... (F32 [3, H, W], in the
// order of their [IMG] blocks); OUT gets logits (F32 [S, vocab]) and, with images,
// image_features (F32 [image tokens, dim]).
int RunForward(const std::vector<std::string>& args);

// generate --model DIR --inputs IN.safetensors --max-tokens N [--temperature T] [--top-p P]
//          [--seed S] [--ignore-eos] [--eos-id ID] [--backend cpu]
// Prints {"ids": [...]}, the continuation of IN's prompt.
int RunGenerate(const std::vector<std::string>& args);

// tokenize --tokenizer PATH: JSON lines {"text": ...} on stdin, {"ids": [...]} lines on stdout
// (raw encoding, no BOS/EOS).
int RunTokenize(const std::vector<std::string>& args);

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_EVAL_COMMANDS_H_
