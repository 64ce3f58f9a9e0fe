#!/usr/bin/env bash
# build-cross.sh: cross-build meshnode for the boards' CPUs with Debian's own
# Rust toolchain, and check each binary under qemu-user (DESIGN.md §8,
# "Heterogeneous CPUs"; issue 17).
#
# Usage (Debian 12 bookworm, x86_64; root is needed only when packages are
# missing):
#
#   scripts/build-cross.sh [--no-install] [--no-check] [--profile NAME] ARCH...
#
#   ARCH          aarch64 (64-bit Pi OS, arm64), armv7 (32-bit Pi OS, armhf),
#                 riscv64 (VisionFive 2, Milk-V, Lichee), or all (the three)
#   --no-install  never touch dpkg/apt; fail if a package is missing
#   --no-check    build only; skip the qemu checks
#   --profile     cargo profile (default release: the binaries that ship)
#
# Environment:
#   AARCH64_TARGET_DIR, ARMV7_TARGET_DIR, RISCV64_TARGET_DIR
#                 cargo target dir of each ARCH. Default:
#                 ${CARGO_TARGET_DIR:-<repo>/target}-ARCH, one per CPU, so
#                 that a cross build never waits on the lock of the x86_64
#                 build, and Debian's rustc (not rustup's) never rebuilds the
#                 host's build scripts there.
#   X86_MESHNODE  x86_64 meshnode to compare the NaN bits against (default:
#                 the first of <repo>/target/{release,debug}/meshnode,
#                 $CARGO_TARGET_DIR/{release,debug}/meshnode that exists; the
#                 comparison is skipped when there is none).
#
# Output: progress and per-stage durations go to stderr. stdout has one line
# per ARCH, in the order given:
#
#   AARCH64_MESHNODE=/abs/path/to/aarch64-unknown-linux-gnu/release/meshnode
#   ARMV7_MESHNODE=/abs/path/to/armv7-unknown-linux-gnueabihf/release/meshnode
#   RISCV64_MESHNODE=/abs/path/to/riscv64gc-unknown-linux-gnu/release/meshnode
#
# so a test can do:
#   eval "$(scripts/build-cross.sh armv7)"; qemu-arm-static "$ARMV7_MESHNODE" run prog.wasm
#
# What it does, per ARCH:
#   1. Packages: rustc-web and cargo-web (bookworm's own rustc-web is 1.85;
#      the bookworm-security one, 1.96 at the time of writing, is what apt
#      picks), the cross gcc and its libc (libc6-dev-*-cross is only a
#      Recommends of the gcc package), qemu-user-static, and the target's
#      std:
#      - aarch64, armv7: libstd-rust-web-dev:arm64 / :armhf, the std built
#        by Debian at rustc-web's version (after dpkg --add-architecture;
#        it pulls in the multiarch libc6 that qemu runs the binary against);
#      - riscv64: Debian 12 has no riscv64 port, so no std package: std is
#        built from rust-web-src with -Zbuild-std (RUSTC_BOOTSTRAP=1 lets
#        the stable rustc take the unstable flag; nothing else is nightly).
#      Each step is skipped when already done.
#   2. cargo build --locked --target TRIPLE -p meshnode with Debian's
#      /usr/bin/cargo and RUSTC=/usr/bin/rustc (Debian's cargo would
#      otherwise run whichever rustc is first on PATH; rustup's has no std
#      for these targets). The linker, CC and AR (for the crates whose build
#      scripts compile C: ring, blake3) are given through the environment
#      rather than a .cargo/config.toml, which keeps every other cargo
#      invocation in the repository untouched. Release by default, because
#      a debug wasmi under qemu is far too slow.
#   3. Checks: `meshnode --version` under qemu-ARCH-static, then, when clang
#      can target wasm32-wasi, tests/aarch64/nan_bits.c compiled to wasm and
#      run there, whose output (NaN bit patterns) must be identical to the
#      x86_64 meshnode's (wasmi's `deterministic` feature). aarch64 and
#      armv7 run *without* -L: with -L /usr/aarch64-linux-gnu the cross
#      package's older ld.so is mixed with the multiarch libc6 and any
#      program that starts a thread hangs in pthread_create; qemu finds the
#      multiarch loader in /lib by itself. riscv64 has no multiarch libc6
#      here, so it runs with -L /usr/riscv64-linux-gnu (the cross libc).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEB_CARGO=/usr/bin/cargo
DEB_RUSTC=/usr/bin/rustc
COMMON_PACKAGES=(rustc-web cargo-web qemu-user-static)

do_install=1
do_check=1
profile=release
arches=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-install) do_install=0 ;;
        --no-check) do_check=0 ;;
        --profile) [ $# -ge 2 ] || { echo "build-cross.sh: --profile needs a name" >&2; exit 2; }
                   profile=$2; shift ;;
        --profile=*) profile=${1#--profile=} ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        all) arches+=(aarch64 armv7 riscv64) ;;
        aarch64|armv7|riscv64) arches+=("$1") ;;
        *) echo "build-cross.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[ ${#arches[@]} -gt 0 ] || { echo "build-cross.sh: name at least one ARCH: aarch64, armv7, riscv64 or all (try --help)" >&2; exit 2; }

log() { echo "[build-cross] $*" >&2; }
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

# The per-CPU facts: target triple, cross tool prefix, Debian architecture
# of the std package ("" when std is built from source), qemu and its flags.
arch_facts() {  # arch_facts ARCH: sets triple, tools, libc_cross, deb_arch, qemu, qemu_args, upper
    case "$1" in
        aarch64) triple=aarch64-unknown-linux-gnu; tools=aarch64-linux-gnu
                 libc_cross=libc6-dev-arm64-cross; deb_arch=arm64
                 qemu=qemu-aarch64-static; qemu_args=() ;;
        armv7)   triple=armv7-unknown-linux-gnueabihf; tools=arm-linux-gnueabihf
                 libc_cross=libc6-dev-armhf-cross; deb_arch=armhf
                 qemu=qemu-arm-static; qemu_args=() ;;
        riscv64) triple=riscv64gc-unknown-linux-gnu; tools=riscv64-linux-gnu
                 libc_cross=libc6-dev-riscv64-cross; deb_arch=""
                 qemu=qemu-riscv64-static; qemu_args=(-L /usr/riscv64-linux-gnu) ;;
    esac
    upper=$(echo "$1" | tr '[:lower:]' '[:upper:]')
}

installed() {  # installed PKG[:ARCH]
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

# ---------------------------------------------------------------------------
stage "packages"
[ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ] \
    || die "this script expects a Debian x86_64 (amd64) host"
wanted=("${COMMON_PACKAGES[@]}")
new_arches=()
for a in "${arches[@]}"; do
    arch_facts "$a"
    wanted+=("gcc-$tools" "$libc_cross")
    if [ -n "$deb_arch" ]; then
        wanted+=("libstd-rust-web-dev:$deb_arch")
        grep -qx "$deb_arch" <<<"$(dpkg --print-foreign-architectures)" || new_arches+=("$deb_arch")
    else
        wanted+=(rust-web-src)
    fi
done
missing=()
for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -eq 0 ] && [ ${#new_arches[@]} -eq 0 ]; then
    log "all packages already installed: ${wanted[*]}"
else
    [ $do_install -eq 1 ] || die "missing (and --no-install given): ${missing[*]} ${new_arches[*]:+(architectures not added: ${new_arches[*]})}"
    [ "$(id -u)" -eq 0 ] || die "must run as root to install: ${missing[*]}"
    for d in "${new_arches[@]}"; do
        log "dpkg --add-architecture $d"
        dpkg --add-architecture "$d"
    done
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
# The workspace's rust-version, if any, must not exceed Debian's rustc.
msrv=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$REPO/Cargo.toml" | head -n1)
have=$(echo "$rustc_version" | awk '{print $2}')
if [ -n "$msrv" ] && [ "$(printf '%s\n%s\n' "$msrv" "${have%%-*}" | sort -V | head -n1)" != "$msrv" ]; then
    die "workspace needs rustc >= $msrv, Debian's is $have (apt-cache policy rustc-web: is bookworm-security enabled?)"
fi

# ---------------------------------------------------------------------------
build_one() {  # build_one ARCH: builds, sets BIN
    arch_facts "$1"
    local dir_var="${upper}_TARGET_DIR" build_std=()
    local target_dir=${!dir_var:-${CARGO_TARGET_DIR:-$REPO/target}-$1}
    case "$target_dir" in /*) ;; *) target_dir=$REPO/$target_dir ;; esac
    if [ -n "$deb_arch" ]; then
        compgen -G "$sysroot/lib/rustlib/$triple/lib/libstd-*.rlib" >/dev/null \
            || die "no $triple std under $sysroot/lib/rustlib (libstd-rust-web-dev:$deb_arch at rustc-web's version?)"
    else
        [ -d "$sysroot/lib/rustlib/src/rust/library" ] \
            || die "no std source under $sysroot/lib/rustlib/src (rust-web-src not installed?)"
        build_std=(-Zbuild-std=std,panic_abort -Zbuild-std-features=)
    fi
    stage "cross build ($profile, $triple)"
    log "target dir: $target_dir"
    local triple_env
    triple_env=$(echo "$triple" | tr '[:lower:]-' '[:upper:]_')
    (
        cd "$REPO"
        export RUSTC="$DEB_RUSTC"
        unset RUSTC_WRAPPER RUSTUP_TOOLCHAIN
        export CARGO_TARGET_DIR="$target_dir"
        export "CARGO_TARGET_${triple_env}_LINKER=$tools-gcc"
        # For crates whose build scripts compile C (cc crate): ring, blake3.
        export "CC_${triple//-/_}=$tools-gcc"
        export "AR_${triple//-/_}=$tools-ar"
        if [ ${#build_std[@]} -gt 0 ]; then export RUSTC_BOOTSTRAP=1; fi
        "$DEB_CARGO" build --profile "$profile" --locked "${build_std[@]}" \
            --target "$triple" -p meshnode >&2
    )
    local out_dir=$profile
    [ "$profile" = dev ] && out_dir=debug
    BIN=$target_dir/$triple/$out_dir/meshnode
    [ -x "$BIN" ] || die "build finished but $BIN is missing"
    local file_out
    file_out=$(file -b "$BIN" 2>/dev/null || true)
    log "built $BIN: $(stat -c %s "$BIN") bytes ($(du -h --apparent-size "$BIN" | cut -f1))${file_out:+; ${file_out%%,*}, ${file_out#*, }}"
}

x86_meshnode() {  # the x86_64 meshnode to compare with, or nothing
    if [ -n "${X86_MESHNODE:-}" ]; then echo "$X86_MESHNODE"; return; fi
    local c
    for c in "$REPO/target/release/meshnode" ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/release/meshnode"} \
             "$REPO/target/debug/meshnode" ${CARGO_TARGET_DIR:+"$CARGO_TARGET_DIR/debug/meshnode"}; do
        [ -x "$c" ] && { echo "$c"; return; }
    done
    return 0  # none found: the caller says so (under set -e a failed test here ended the script silently)
}

check_one() {  # check_one ARCH BIN
    arch_facts "$1"
    local bin=$2
    stage "qemu check ($1)"
    command -v "$qemu" >/dev/null || die "$qemu not found (qemu-user-static)"
    log "$qemu ${qemu_args[*]} $bin --version: $("$qemu" "${qemu_args[@]}" "$bin" --version)"
    if ! command -v clang >/dev/null || [ ! -e /usr/lib/wasm32-wasi/libc.a ]; then
        log "clang/wasi-libc not found; wasm check skipped"
        return
    fi
    if [ ! -e "$tmp/nan_bits.wasm" ]; then
        clang --target=wasm32-wasi --sysroot=/usr -O2 "$REPO/tests/aarch64/nan_bits.c" -o "$tmp/nan_bits.wasm"
    fi
    "$qemu" "${qemu_args[@]}" "$bin" run "$tmp/nan_bits.wasm" > "$tmp/$1.out"
    log "nan_bits.wasm under $qemu: $(wc -l < "$tmp/$1.out") lines, $(grep -cE ' (7ff8000000000000|7fc00000)$' "$tmp/$1.out") canonical NaNs"
    local x86
    x86=$(x86_meshnode)
    if [ -z "$x86" ]; then
        log "no x86_64 meshnode found (set X86_MESHNODE); comparison skipped"
        return
    fi
    [ -e "$tmp/x86.out" ] || "$x86" run "$tmp/nan_bits.wasm" > "$tmp/x86.out" \
        || die "$x86 run nan_bits.wasm failed (is it being rebuilt? set X86_MESHNODE)"
    if cmp -s "$tmp/x86.out" "$tmp/$1.out"; then
        log "nan_bits output identical on x86_64 ($x86) and $1"
    else
        diff "$tmp/x86.out" "$tmp/$1.out" >&2 || true
        die "nan_bits output differs between x86_64 and $1"
    fi
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
results=()
for a in "${arches[@]}"; do
    build_one "$a"
    [ $do_check -eq 0 ] || check_one "$a" "$BIN"
    arch_facts "$a"
    results+=("${upper}_MESHNODE=$BIN")
done
stage_end
printf '%s\n' "${results[@]}"
