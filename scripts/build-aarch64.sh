#!/usr/bin/env bash
# build-aarch64.sh: cross-build meshnode for aarch64-unknown-linux-gnu with
# Debian's own Rust toolchain and check that it runs under qemu-aarch64-static
# (DESIGN.md §8, "Heterogeneous CPUs").
#
# Usage (Debian 12 bookworm, x86_64; root is needed only when packages are
# missing):
#
#   scripts/build-aarch64.sh [--no-install] [--no-check]
#
#   --no-install  never touch dpkg/apt; fail if a package is missing
#   --no-check    build only; skip the qemu checks
#
# Environment:
#   AARCH64_TARGET_DIR  cargo target dir for the cross build. Defaults to
#                       $CARGO_TARGET_DIR, else <repo>/target-aarch64 (git-
#                       ignored), so that the cross build never waits on the
#                       lock of the x86_64 build in <repo>/target.
#   X86_MESHNODE        x86_64 meshnode to compare against (default: the first
#                       of <repo>/target/release/meshnode,
#                       $CARGO_TARGET_DIR/release/meshnode that exists; the
#                       comparison is skipped when there is none).
#
# Output: progress and per-stage durations go to stderr. The last (and only)
# line on stdout is
#
#   AARCH64_MESHNODE=/abs/path/to/aarch64-unknown-linux-gnu/release/meshnode
#
# so a test can do:
#   bin=$(scripts/build-aarch64.sh | tail -n1 | cut -d= -f2-)
#   qemu-aarch64-static "$bin" run prog.wasm
#
# What it does:
#   1. dpkg --add-architecture arm64; apt-get update; install rustc-web,
#      cargo-web, libstd-rust-web-dev:arm64 (the aarch64 std, same version as
#      rustc-web; pulls in libc6:arm64), gcc-aarch64-linux-gnu and
#      libc6-dev-arm64-cross (linker and its libc; the latter is only a
#      Recommends of the gcc package) and qemu-user-static. Each step is
#      skipped when already done. Bookworm's own rustc-web is 1.85; the
#      bookworm-security one (1.96 at the time of writing) is what apt picks.
#   2. cargo build --release --locked --target aarch64-unknown-linux-gnu
#      -p meshnode, run with Debian's /usr/bin/cargo and RUSTC=/usr/bin/rustc:
#      Debian's cargo would otherwise run whichever rustc is first on PATH
#      (rustup's has no aarch64 std). The linker is given through
#      CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER rather than a
#      .cargo/config.toml, which keeps every other cargo invocation in the
#      repository untouched. Release, because a debug wasmi under qemu is far
#      too slow.
#   3. Checks, with qemu-aarch64-static and deliberately *without* -L: with
#      -L /usr/aarch64-linux-gnu the cross package's older ld.so is mixed with
#      the multiarch libc6:arm64 and any program that starts a thread hangs in
#      pthread_create. qemu finds the multiarch loader at
#      /lib/ld-linux-aarch64.so.1 by itself. The checks run `meshnode
#      --version`, then, when clang can target wasm32-wasi, compile
#      tests/aarch64/nan_bits.c and compare its output (NaN bit patterns) under
#      qemu with the x86_64 meshnode's: with wasmi's `deterministic` feature
#      they must be identical.
set -euo pipefail

TARGET=aarch64-unknown-linux-gnu
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGES=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu
          libc6-dev-arm64-cross qemu-user-static)
DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
QEMU=qemu-aarch64-static

do_install=1
do_check=1
for arg in "$@"; do
    case "$arg" in
        --no-install) do_install=0 ;;
        --no-check) do_check=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-aarch64.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

log() { echo "[build-aarch64] $*" >&2; }
die() { log "error: $*"; exit 1; }

stage_name=""
stage_start=0
stage() {
    stage_end
    stage_name=$1
    stage_start=$(date +%s.%N)
    log "== $stage_name"
}
stage_end() {
    if [ -n "$stage_name" ]; then
        log "== $stage_name: done in $(awk -v a="$stage_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')"
        stage_name=""
    fi
}

installed() {  # installed PKG[:ARCH]
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# ---------------------------------------------------------------------------
stage "packages"
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] \
    || die "this script expects a Debian x86_64 (amd64) host"
missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
need_arch=0
dpkg --print-foreign-architectures | grep -qx arm64 || need_arch=1
if [ ${#missing[@]} -eq 0 ] && [ $need_arch -eq 0 ]; then
    log "all packages already installed: ${PACKAGES[*]}"
else
    [ $do_install -eq 1 ] || die "missing (and --no-install given): ${missing[*]} $([ $need_arch -eq 1 ] && echo '(arm64 architecture not added)')"
    [ "$(id -u)" -eq 0 ] || die "must run as root to install: ${missing[*]}"
    if [ $need_arch -eq 1 ]; then
        log "dpkg --add-architecture arm64"
        dpkg --add-architecture arm64
    fi
    log "apt-get update"
    apt-get update -q >&2
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# Debian's toolchain, regardless of what rustup put first on PATH.
[ -x "$DEB_RUSTC" ] && [ -x "$DEB_CARGO" ] || die "$DEB_RUSTC or $DEB_CARGO missing (rustc-web/cargo-web not installed?)"
rustc_version=$("$DEB_RUSTC" --version)
log "rustc: $DEB_RUSTC = $rustc_version; cargo: $DEB_CARGO = $("$DEB_CARGO" --version)"
sysroot=$("$DEB_RUSTC" --print sysroot)
compgen -G "$sysroot/lib/rustlib/$TARGET/lib/libstd-*.rlib" >/dev/null \
    || die "no $TARGET std under $sysroot/lib/rustlib (libstd-rust-web-dev:arm64 at rustc-web's version?)"
# The workspace's rust-version, if any, must not exceed Debian's rustc.
msrv=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$REPO/Cargo.toml" | head -n1)
have=$(echo "$rustc_version" | awk '{print $2}')
if [ -n "$msrv" ] && [ "$(printf '%s\n%s\n' "$msrv" "${have%%-*}" | sort -V | head -n1)" != "$msrv" ]; then
    die "workspace needs rustc >= $msrv, Debian's is $have (apt-cache policy rustc-web: is bookworm-security enabled?)"
fi

# ---------------------------------------------------------------------------
stage "cross build (release, $TARGET)"
target_dir=${AARCH64_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO/target-aarch64}}
case "$target_dir" in /*) ;; *) target_dir=$REPO/$target_dir ;; esac
log "target dir: $target_dir"
(
    cd "$REPO"
    export RUSTC="$DEB_RUSTC"
    unset RUSTC_WRAPPER RUSTUP_TOOLCHAIN
    export CARGO_TARGET_DIR="$target_dir"
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    # For crates whose build scripts compile C (cc crate), e.g. ring, blake3.
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
    "$DEB_CARGO" build --release --locked --target "$TARGET" -p meshnode >&2
)
BIN=$target_dir/$TARGET/release/meshnode
[ -x "$BIN" ] || die "build finished but $BIN is missing"
file_out=$(file -b "$BIN" 2>/dev/null || true)
log "built $BIN ($(du -h "$BIN" | cut -f1)${file_out:+; ${file_out%%,*}, ${file_out#*, }})"

# ---------------------------------------------------------------------------
if [ $do_check -eq 1 ]; then
    stage "qemu check"
    command -v "$QEMU" >/dev/null || die "$QEMU not found (qemu-user-static)"
    # No -L, see the header.
    log "$QEMU $BIN --version: $("$QEMU" "$BIN" --version)"

    if command -v clang >/dev/null && [ -e /usr/lib/wasm32-wasi/libc.a ]; then
        tmp=$(mktemp -d)
        trap 'rm -rf "$tmp"' EXIT
        clang --target=wasm32-wasi --sysroot=/usr -O2 "$REPO/tests/aarch64/nan_bits.c" -o "$tmp/nan_bits.wasm"
        "$QEMU" "$BIN" run "$tmp/nan_bits.wasm" > "$tmp/arm.out"
        log "nan_bits.wasm under qemu: $(wc -l < "$tmp/arm.out") lines, $(grep -cE ' (7ff8000000000000|7fc00000)$' "$tmp/arm.out") canonical NaNs"
        x86=${X86_MESHNODE:-}
        if [ -z "$x86" ]; then
            for c in "$REPO/target/release/meshnode" ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/release/meshnode"}; do
                [ -x "$c" ] && { x86=$c; break; }
            done
        fi
        if [ -n "$x86" ]; then
            "$x86" run "$tmp/nan_bits.wasm" > "$tmp/x86.out"
            if cmp -s "$tmp/x86.out" "$tmp/arm.out"; then
                log "nan_bits output identical on x86_64 ($x86) and aarch64"
            else
                diff "$tmp/x86.out" "$tmp/arm.out" >&2 || true
                die "nan_bits output differs between x86_64 and aarch64"
            fi
        else
            log "no x86_64 meshnode found (set X86_MESHNODE); comparison skipped"
        fi
    else
        log "clang/wasi-libc not found; wasm check skipped"
    fi
fi
stage_end

echo "AARCH64_MESHNODE=$BIN"
