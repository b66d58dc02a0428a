"""Offline stand-in for @rules_cc: Bazel 4.2.3 loads it, Debian's rules_cc is too new.

Every symbol forwards to the native rule of the same name.
"""

cc_binary = native.cc_binary
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
cc_import = native.cc_import
objc_library = native.objc_library
