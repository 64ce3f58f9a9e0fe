#!/usr/bin/env bash
# build-frozen.sh: build meshnode as it was at an earlier commit of main (the
# "frozen" build), for the rolling-upgrade scenario (testnet/scenarios/
# upgrade.toml), which starts a fleet on it and rolls it to this build
# (issue 17: "the roll test rolls from a frozen older build").
#
# Usage: scripts/build-frozen.sh [COMMIT]
#
#   COMMIT  default FROZEN_COMMIT below: the oldest commit of main that has
#           signed rolling upgrades (an older node could not apply one),
#           whose version (0.1.0) is older than this build's.
#
# Environment:
#   CARGO_TARGET_DIR    the main build's target dir (default <repo>/target):
#                       a new frozen target dir is seeded from its compiled
#                       dependencies (cp -a, so their mtimes keep them
#                       fresh), which leaves only the workspace's own crates
#                       to compile.
#   FROZEN_TARGET_DIR   where the frozen build compiles (default
#                       ${CARGO_TARGET_DIR}-frozen).
#   FROZEN_CACHE        where built binaries are kept, one per commit
#                       (default /var/tmp/meshnode-frozen): a commit never
#                       changes, so a cached binary is never rebuilt.
#
# Output: progress to stderr; stdout is one line,
#
#   MESHNODE_FROZEN_BIN=/var/tmp/meshnode-frozen/<commit>/meshnode
#
# Needs the commit in the clone's history (a shallow clone lacks it: `git
# fetch --unshallow`).
set -euo pipefail

# e629125: main as stop 28 landed it (CI passed), meshnode 0.1.0, vessel
# protocol 2. Pinned: moving it changes what the roll test proves.
FROZEN_COMMIT=e62912522e778eec9529826fd4c6ec983240c583
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
commit=${1:-$FROZEN_COMMIT}

log() { echo "[build-frozen] $*" >&2; }
die() { log "error: $*"; exit 1; }

full=$(git -C "$REPO" rev-parse --verify --quiet "$commit^{commit}") \
    || die "commit $commit is not in $REPO's history (a shallow clone? git fetch --unshallow)"
cache=${FROZEN_CACHE:-/var/tmp/meshnode-frozen}/$full
bin=$cache/meshnode
if [ -x "$bin" ]; then
    log "cached: $bin ($("$bin" --version))"
    echo "MESHNODE_FROZEN_BIN=$bin"
    exit 0
fi

main_target=${CARGO_TARGET_DIR:-$REPO/target}
target=${FROZEN_TARGET_DIR:-$main_target-frozen}
if [ ! -d "$target/debug/deps" ] && [ -d "$main_target/debug/deps" ]; then
    log "seeding $target from $main_target's compiled dependencies"
    mkdir -p "$target/debug/deps"
    cp -a "$main_target/debug/build" "$main_target/debug/.fingerprint" "$target/debug/"
    find "$main_target/debug/deps" -maxdepth 1 -name 'lib*' -exec cp -a -t "$target/debug/deps" {} +
fi

src=$(mktemp -d /var/tmp/meshnode-frozen-src.XXXXXX)
trap 'rm -rf "$src"' EXIT
log "checking out ${full:0:12} into $src"
git -C "$REPO" archive "$full" | tar -x -C "$src"
started=$(date +%s)
log "building meshnode at ${full:0:12} in $target"
(cd "$src" && CARGO_TARGET_DIR=$target cargo build --locked -p meshnode --bin meshnode >&2)
mkdir -p "$cache"
cp "$target/debug/meshnode" "$bin.tmp"
mv "$bin.tmp" "$bin"
log "built $bin ($("$bin" --version)) in $(( $(date +%s) - started )) s"
echo "MESHNODE_FROZEN_BIN=$bin"
