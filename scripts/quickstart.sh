#!/usr/bin/env bash
# Builds meshnode and runs `meshnode demo`: three local nodes (real
# `meshnode start` processes on 127.0.0.1, scratch data and keys), one vessel
# deployed and moved from node to node while it runs, every step printed.
# Needs a Rust toolchain (1.88 or newer); when there is none (no cargo on
# PATH or in ~/.cargo/bin), it installs Debian's rustc-web and cargo-web
# (1.96, bookworm-security) with apt-get, as root or with sudo
# (scripts/rust-toolchain.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/rust-toolchain.sh
source scripts/rust-toolchain.sh
ensure_rust_toolchain "$PWD"

echo "building meshnode (release)..."
cargo build --release --locked -p meshnode
out="${CARGO_TARGET_DIR:-target}"
echo
echo "running: meshnode demo"
exec "$out/release/meshnode" demo
