"""cuda_library: compiles .cu files with the toolkit's nvcc, for Hopper, on any machine.

Each .cu becomes one object through a genrule, so no GPU and no CUDA-aware Bazel rules are
needed; the objects go into an ordinary cc_library that C++ code depends on.

    cuda_library(
        name = "rmsnorm_cuda",
        srcs = ["rmsnorm.cu"],
        hdrs = ["rmsnorm.h"],
    )
"""

NVCC = "/usr/local/cuda/bin/nvcc"

# sm_90a machine code for the H100/H200 (wgmma, TMA), plus compute_90 PTX that the driver can
# JIT for a newer Hopper-compatible part.
NVCC_FLAGS = [
    "-std=c++20",
    "-O3",
    "--expt-relaxed-constexpr",
    "-Xcompiler=-fPIC",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_90,code=compute_90",
]

def cuda_library(name, srcs, hdrs = [], textual_hdrs = [], deps = [], nvcc_flags = [], **kwargs):
    objs = []
    for src in srcs:
        obj = "_objs/%s/%s.o" % (name, src.rsplit(".", 1)[0])
        native.genrule(
            name = "%s_%s_nvcc" % (name, src.replace("/", "_").replace(".", "_")),
            srcs = [src] + hdrs + textual_hdrs,
            outs = [obj],
            cmd = " ".join([NVCC] + NVCC_FLAGS + nvcc_flags + [
                "-I.",
                "-I$(GENDIR)",
                "-c $(location %s)" % src,
                "-o $@",
            ]),
        )
        objs.append(obj)
    native.cc_library(
        name = name,
        srcs = objs,
        hdrs = hdrs,
        textual_hdrs = textual_hdrs,
        deps = deps + ["//third_party:cuda_runtime"],
        **kwargs
    )
