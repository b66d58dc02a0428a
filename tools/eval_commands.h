// The subcommands of pixtral_eval, the harness that runs project code on files for comparison
// with references. Each takes the arguments after its name and returns the exit code: 0 on
// success, 1 when the work fails (the error on stderr), 2 for a bad command line.
#ifndef PIXTRAL_TOOLS_EVAL_COMMANDS_H_
#define PIXTRAL_TOOLS_EVAL_COMMANDS_H_

namespace pixtral {

// forward --model DIR --inputs IN.safetensors --out OUT.safetensors [--backend cpu]
int EvalForward(int argc, const char* const* argv);

// generate --model DIR --inputs IN.safetensors --max-tokens N [--temperature T] [--top-p P]
//          [--seed S] [--ignore-eos] [--eos-id ID] [--backend cpu]
int EvalGenerate(int argc, const char* const* argv);

}  // namespace pixtral

#endif  // PIXTRAL_TOOLS_EVAL_COMMANDS_H_
