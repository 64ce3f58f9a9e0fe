#!/usr/bin/env bash
# fuzz-smoke.sh: build the two cargo-fuzz workspaces (fuzz/ and
# wasm-rewriter/fuzz/) with stable Rust, and run every target for a few
# seconds. CI runs it (scripts/test-all.sh), so that the targets keep
# building and each oracle meets inputs that no seeded test chose.
#
# Usage: scripts/fuzz-smoke.sh [TARGET...]     (default: every target)
#
# Why not `cargo fuzz`: its default build needs nightly (-Zsanitizer=address),
# and CI has stable Rust only (rustup toolchains cannot be fetched there).
# What cargo fuzz does with `--sanitizer none` needs no nightly: libfuzzer-sys
# compiles and links libFuzzer itself, and SanitizerCoverage is an LLVM pass
# that stable rustc runs when asked (-Cpasses=sancov-module and the same
# -Cllvm-args cargo-fuzz passes). So these are the real targets, coverage-
# guided, minus AddressSanitizer (the code is safe Rust; unsafe code in
# dependencies goes unchecked, as it does in `cargo test`). As cargo fuzz does,
# the build names the host target explicitly, so that the coverage flags reach
# the targets but not build scripts and proc macros; and it keeps debug
# assertions and overflow checks on (each fuzz Cargo.toml's release profile).
#
# Environment:
#   FUZZ_TARGET_DIR  cargo target dir for both workspaces (default:
#                    ${CARGO_TARGET_DIR:-<repo>/target}-fuzz; its own, since
#                    the coverage flags would rebuild everything else's)
#   FUZZ_SECONDS     how long each target runs (default 10)
#
# Each target's corpus is kept in $FUZZ_TARGET_DIR/corpus/TARGET, so a cached
# target dir grows it from run to run; WORKSPACE/seeds/TARGET, where there is
# one, is read as well (valid messages: from nothing, a 10 s run never reaches
# a manifest that decodes; protocol/src/fuzzing.rs, write_seeds, makes them). A crash, a leak or a timeout fails the
# script, and the input is saved in $FUZZ_TARGET_DIR/artifacts/TARGET/. Per
# target, one line goes to stdout:
#
#   fuzz TARGET: ok, N runs in S s, corpus C inputs, coverage X
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ_SECONDS=${FUZZ_SECONDS:-10}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO/target}-fuzz}
case "$FUZZ_TARGET_DIR" in /*) ;; *) FUZZ_TARGET_DIR=$REPO/$FUZZ_TARGET_DIR ;; esac
# Per-input limits: the oracles finish in milliseconds, and snapshot_validate's
# fixture allocates guest memory up to the dock's default limit.
FUZZ_INPUT_TIMEOUT_S=20
FUZZ_RSS_LIMIT_MB=3072

# workspace directory (relative to the repository) → its targets
declare -A WORKSPACE_TARGETS=(
    [fuzz]="manifest_decode mesh_messages peer_messages replica_messages lease_messages release_messages snapshot_validate coordinate"
    [wasm-rewriter/fuzz]="differential"
)

log() { echo "[fuzz-smoke] $*" >&2; }
die() { log "error: $*"; exit 1; }

wanted=("$@")
is_wanted() {
    [ ${#wanted[@]} -eq 0 ] && return 0
    local w
    for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done
    return 1
}

host=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$host" ] || die "cannot tell the host target from \`rustc -vV\`"
# cargo-fuzz's flags for `--sanitizer none` (cargo-fuzz src/project.rs).
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing -Cforce-frame-pointers"
export CARGO_TARGET_DIR=$FUZZ_TARGET_DIR

run_target() {  # run_target WORKSPACE TARGET
    local ws=$1 target=$2
    local seeds=$REPO/$ws/seeds/$target
    [ -d "$seeds" ] || seeds=""
    local bin=$FUZZ_TARGET_DIR/$host/release/$target
    local corpus=$FUZZ_TARGET_DIR/corpus/$target
    local artifacts=$FUZZ_TARGET_DIR/artifacts/$target
    local out=$FUZZ_TARGET_DIR/logs/$target.log
    mkdir -p "$corpus" "$artifacts" "$(dirname "$out")"
    log "running $target for $FUZZ_SECONDS s (corpus $corpus: $(find "$corpus" -type f | wc -l) inputs${seeds:+; seeds $seeds})"
    local rc=0
    "$bin" "$corpus" ${seeds:+"$seeds"} -max_total_time="$FUZZ_SECONDS" -timeout="$FUZZ_INPUT_TIMEOUT_S" \
        -rss_limit_mb="$FUZZ_RSS_LIMIT_MB" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        > "$out" 2>&1 || rc=$?
    if [ $rc -ne 0 ]; then
        tail -n 60 "$out" >&2
        echo "fuzz $target: FAILED (exit $rc; inputs in $artifacts, log $out)"
        return 1
    fi
    # libFuzzer's last status line: "#N DONE cov: X ft: Y corp: C/..."; its
    # final stats: "stat::number_of_executed_units: N".
    local runs cov corp
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1)
    cov=$(grep -o 'cov: [0-9]*' "$out" | tail -n1 | awk '{print $2}')
    corp=$(find "$corpus" -type f | wc -l)
    echo "fuzz $target: ok, ${runs:-?} runs in $FUZZ_SECONDS s, corpus $corp inputs, coverage ${cov:-?}"
}

failed=()
for ws in "${!WORKSPACE_TARGETS[@]}"; do
    targets=()
    for t in ${WORKSPACE_TARGETS[$ws]}; do is_wanted "$t" && targets+=("$t"); done
    [ ${#targets[@]} -gt 0 ] || continue
    log "building $ws (${targets[*]}) into $FUZZ_TARGET_DIR"
    bin_args=()
    for t in "${targets[@]}"; do bin_args+=(--bin "$t"); done
    (cd "$REPO/$ws" && cargo build --release --locked --target "$host" "${bin_args[@]}") >&2
    for t in "${targets[@]}"; do
        run_target "$ws" "$t" || failed+=("$t")
    done
done
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
