"""grpc_proto_library: C++ messages and gRPC stubs from .proto files, with the system's protoc.

Debian's protoc and grpc_cpp_plugin run in a genrule (Bazel 4.2.3's own proto rules would fetch
protobuf sources from the network). Generated headers are included by their path in the
workspace, e.g. `#include "proto/gateway.grpc.pb.h"`.

    grpc_proto_library(
        name = "gateway_proto",
        srcs = ["gateway.proto"],
        deps = [":common_proto"],
    )
"""

def grpc_proto_library(name, srcs, deps = [], proto_deps = [], **kwargs):
    """srcs: .proto files of this package; proto_deps: .proto files they import."""
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc", base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    native.genrule(
        name = name + "_protoc",
        srcs = srcs + proto_deps,
        outs = outs,
        tools = [],
        cmd = " ".join([
            "/usr/bin/protoc",
            "-I.",
            "--cpp_out=$(GENDIR)",
            "--grpc_out=$(GENDIR)",
            "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin",
        ] + ["$(location %s)" % s for s in srcs]),
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["//third_party:grpc"],
        **kwargs
    )
