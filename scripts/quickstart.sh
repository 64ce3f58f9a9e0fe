#!/usr/bin/env bash
# Builds meshnode and runs `meshnode demo`: three local nodes (real
# `meshnode start` processes on 127.0.0.1, scratch data and keys), one vessel
# deployed and moved from node to node while it runs, every step printed.
# Needs only a Rust toolchain (1.88 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "building meshnode (release)..."
cargo build --release --locked -p meshnode
out="${CARGO_TARGET_DIR:-target}"
echo
echo "running: meshnode demo"
exec "$out/release/meshnode" demo
