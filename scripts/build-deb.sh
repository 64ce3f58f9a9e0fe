#!/usr/bin/env bash
# Builds meshnode's Debian package for one CPU from a built binary:
#   scripts/build-deb.sh --arch amd64|arm64|armhf|riscv64 --binary PATH [--out DIR]
#                        [--help-binary PATH] [--compression xz|gzip|none]
# The package holds the binary (/usr/bin/meshnode), the systemd unit
# (packaging/deb/meshnode.service: Type=notify, its own system user, data in
# /var/lib/meshnode), a man page made from the binary's --help, the README,
# and the maintainer scripts of packaging/deb. It is built with dpkg-deb
# alone (no debhelper), so it builds on any Debian machine for any CPU.
# --help-binary: a binary this machine can run, to write the man page from
# (default: --binary itself; give the host build when packaging a cross one).
# --compression: xz (the default, smallest for release packages) or gzip /
# none (faster, for tests of a large debug build).
# Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="" binary="" out="${CARGO_TARGET_DIR:-$PWD/target}/deb" help_binary="" compression=xz
while [ $# -gt 0 ]; do
    case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --help-binary) help_binary="$2"; shift 2 ;;
    --compression) compression="$2"; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
case "$arch" in
amd64|arm64|armhf|riscv64) ;;
*) echo "error: --arch must be amd64, arm64, armhf or riscv64, not '${arch}'" >&2; exit 2 ;;
esac
case "$compression" in
xz|gzip|none) ;;
*) echo "error: --compression must be xz, gzip or none, not '${compression}'" >&2; exit 2 ;;
esac
[ -x "$binary" ] || { echo "error: --binary '${binary}' is not an executable file" >&2; exit 2; }
help_binary="${help_binary:-$binary}"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ -n "$version" ] || { echo "error: no workspace version in Cargo.toml" >&2; exit 1; }
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$binary" "$root/usr/bin/meshnode"
install -D -m 0644 packaging/deb/meshnode.service "$root/lib/systemd/system/meshnode.service"
install -D -m 0644 README.md "$root/usr/share/doc/meshnode/README.md"
install -D -m 0644 docs/guide.md "$root/usr/share/doc/meshnode/guide.md"

# The man page: the top-level help and each command's, as a roff page.
man="$root/usr/share/man/man1/meshnode.1"
mkdir -p "$(dirname "$man")"
roff_text() { sed -e 's/\\/\\e/g' -e 's/^\([.'"'"']\)/\\\&\1/'; }
{
    echo ".TH MESHNODE 1 \"$(date -u +%Y-%m-%d)\" \"meshnode $version\" \"User Commands\""
    echo ".SH NAME"
    echo "meshnode \\- run unmodified WASI programs across a mesh of devices, and move them live"
    echo ".SH SYNOPSIS"
    echo ".B meshnode"
    echo "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]"
    echo ".SH DESCRIPTION"
    echo ".nf"
    "$help_binary" --help | roff_text
    echo ".fi"
    commands=$("$help_binary" --help | awk '/^Commands:/{on=1; next} on && /^  [a-z]/{print $1} on && /^$/{exit}')
    for c in $commands; do
        [ "$c" = help ] && continue
        echo ".SH \"meshnode $c\""
        echo ".nf"
        "$help_binary" "$c" --help | roff_text
        echo ".fi"
    done
    echo ".SH FILES"
    echo ".TP"
    echo ".I /var/lib/meshnode"
    echo "the service's data directory: its identity, vessels and store"
    echo ".TP"
    echo ".I /lib/systemd/system/meshnode.service"
    echo "the service (Type=notify, with a watchdog)"
    echo ".SH \"SEE ALSO\""
    echo "/usr/share/doc/meshnode/guide.md"
} >"$man"
gzip -9n "$man"

mkdir -p "$root/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
size_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: meshnode
Version: $version
Architecture: $arch
Maintainer: meshnode maintainers <maintainers@meshnode.invalid>
Installed-Size: $size_kib
Depends: libc6 (>= 2.36), passwd
Section: net
Priority: optional
Homepage: https://meshnode.invalid
Description: run unmodified WASI programs across a mesh of devices
 Each device runs a node; the nodes find each other and form one mesh.
 A WebAssembly program deployed to it runs as a vessel that the mesh
 moves, live, to the node nearest its clients, replicates, and fails
 over when its node dies. This package runs the node as a systemd
 service under its own user, with its data in /var/lib/meshnode.
EOF

mkdir -p "$out"
deb="$out/meshnode_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z$compression" --build "$root" "$deb" >/dev/null
echo "built $deb ($(du -k "$deb" | cut -f1) KiB; binary $(du -k "$binary" | cut -f1) KiB)" >&2
echo "$deb"
