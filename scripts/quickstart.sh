#!/usr/bin/env bash
# Builds meshnode and the example vessel from source, then runs the example
# with `meshnode run`. Installs the C-to-WASI toolchain first if it is missing
# (Debian/Ubuntu, as root or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
missing=()
for p in clang lld wasi-libc libclang-rt-14-dev-wasm32; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing the C-to-WASI toolchain: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "building meshnode (release)..."
cargo build --release --locked -p meshnode
out="${CARGO_TARGET_DIR:-target}"
mkdir -p "$out/examples" "$out/examples/data"
clang --target=wasm32-wasi --sysroot=/usr -O2 examples/hello.c -o "$out/examples/hello.wasm"

echo "running: meshnode run --dir $out/examples/data::/data --env GREETING=hi $out/examples/hello.wasm one two"
"$out/release/meshnode" run --dir "$out/examples/data::/data" --env GREETING=hi "$out/examples/hello.wasm" one two
echo "the vessel's file: $(cat "$out/examples/data/hello.txt")"
