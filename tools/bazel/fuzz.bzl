"""pixtral_fuzz_target: a libFuzzer target and the regression test that replays its corpus.

`bazel build --config=fuzz //tests/fuzz:NAME` builds NAME with clang, libFuzzer, ASan and UBSan
(tools/fuzz.sh runs each for a bounded time). In ordinary builds NAME links a small driver
instead of libFuzzer, and NAME_corpus_test replays every file of the corpus through the same
entry point with the default compiler, so the corpus guards against regressions in every CI run.
"""

def pixtral_fuzz_target(name, srcs, deps = [], data = []):
    corpus = native.glob(["corpus/" + name + "/*"])
    native.filegroup(
        name = name + "_corpus",
        srcs = corpus,
    )
    native.cc_binary(
        name = name,
        srcs = srcs,
        data = data,
        deps = deps + select({
            "//tests/fuzz:fuzzing": [],
            "//conditions:default": ["//tests/fuzz:replay_main"],
        }),
        linkopts = select({
            "//tests/fuzz:fuzzing": ["-fsanitize=fuzzer"],
            "//conditions:default": [],
        }),
    )
    native.cc_test(
        name = name + "_corpus_test",
        srcs = srcs,
        data = data + [":" + name + "_corpus"],
        args = ["$(locations :" + name + "_corpus)"],
        deps = deps + ["//tests/fuzz:replay_main"],
    )
