# Sourced (not run) by scripts/test-all.sh and scripts/quickstart.sh:
# `ensure_rust_toolchain` puts a cargo that meets the workspace's
# rust-version on PATH, so that both commands need nothing but the machine.
#
# Which cargo, in this order:
#   1. the first `cargo` on PATH;
#   2. rustup's, in ${CARGO_HOME:-~/.cargo}/bin (a login shell's PATH has it,
#      a plain `sudo` or a CI job's may not);
#   3. Debian's own: apt-get install rustc-web cargo-web (/usr/bin/rustc,
#      /usr/bin/cargo). Bookworm's own rustc-web is 1.85, too old; the one in
#      bookworm-security (1.96 at the time of writing) is what apt picks on a
#      machine with the default security source, as scripts/build-aarch64.sh
#      also relies on. Installing needs root or sudo.
# The chosen rustc must be at least the workspace's rust-version (Cargo.toml);
# if it is not, the function says which version it found and stops.

# ensure_rust_toolchain REPO_DIR: exits the shell with a reason on failure.
ensure_rust_toolchain() {
    local repo=$1
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    if ! command -v cargo >/dev/null 2>&1; then
        local rustup_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
        if [ -x "$rustup_bin/cargo" ]; then
            export PATH="$rustup_bin:$PATH"
        else
            echo "no cargo on PATH or in $rustup_bin: installing Debian's rustc-web and cargo-web"
            if [ -n "$sudo" ] && ! command -v sudo >/dev/null 2>&1; then
                echo "error: installing rustc-web and cargo-web needs root (or sudo)" >&2
                exit 1
            fi
            $sudo apt-get update -qq
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends rustc-web cargo-web >/dev/null
            hash -r
            command -v cargo >/dev/null 2>&1 || {
                echo "error: rustc-web and cargo-web are installed but no cargo is on PATH (expected /usr/bin/cargo)" >&2
                exit 1
            }
        fi
    fi
    # Debian's cargo runs the first rustc on PATH; check that one.
    local msrv have
    msrv=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$repo/Cargo.toml" | head -n1)
    have=$(rustc --version | awk '{print $2}')
    have=${have%%-*}
    if [ -n "$msrv" ] && [ "$(printf '%s\n%s\n' "$msrv" "$have" | sort -V | head -n1)" != "$msrv" ]; then
        echo "error: the workspace needs Rust $msrv or newer; $(command -v rustc) is $have." >&2
        echo "  On Debian 12, Debian's rustc-web from bookworm-security is new enough (apt-cache policy rustc-web);" >&2
        echo "  or install a current toolchain with rustup." >&2
        exit 1
    fi
    echo "cargo: $(command -v cargo) ($(cargo --version)); rustc: $(command -v rustc) ($(rustc --version)); workspace needs >= $msrv"
}
