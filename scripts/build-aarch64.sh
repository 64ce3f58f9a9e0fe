#!/usr/bin/env bash
# build-aarch64.sh: cross-build meshnode for aarch64-unknown-linux-gnu and
# check it under qemu-aarch64-static. Kept for the commands that name it;
# scripts/build-cross.sh does the work (and builds armv7 and riscv64 too).
#
# Usage: scripts/build-aarch64.sh [--no-install] [--no-check] [--profile NAME]
#
# Environment: AARCH64_TARGET_DIR (default ${CARGO_TARGET_DIR:-<repo>/target}-aarch64),
# X86_MESHNODE, as scripts/build-cross.sh --help says.
#
# Output: the last (and only) line on stdout is
#
#   AARCH64_MESHNODE=/abs/path/to/aarch64-unknown-linux-gnu/release/meshnode
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/build-cross.sh" "$@" aarch64
