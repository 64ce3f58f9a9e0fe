#!/bin/sh
# Rebuilds the clang test modules from kernels.c. The .wasm files are checked
# in so that `cargo test` needs no wasm toolchain.
set -eu
cd "$(dirname "$0")"
CC="clang --target=wasm32-wasi --sysroot=/usr -nostartfiles -Wl,--no-entry"
$CC -O2 kernels.c -o kernels-O2.wasm
$CC -O2 -mbulk-memory -mmultivalue -mreference-types -msign-ext -mnontrapping-fptoint \
    kernels.c -o kernels-O2-features.wasm
$CC -O0 kernels.c -o kernels-O0.wasm
