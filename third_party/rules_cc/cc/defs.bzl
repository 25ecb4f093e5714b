"""Bazel's native C++ rules under rules_cc's names.

Bazel 4.2.3 (Debian's bazel-bootstrap) fetches rules_cc from the network
for its own tools; this project builds no C++, so a local stand-in that
re-exports the native rules lets the workspace load offline.
"""

cc_binary = native.cc_binary
cc_import = native.cc_import
cc_library = native.cc_library
cc_proto_library = native.cc_proto_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
fdo_prefetch_hints = native.fdo_prefetch_hints
fdo_profile = native.fdo_profile
objc_import = native.objc_import
objc_library = native.objc_library
