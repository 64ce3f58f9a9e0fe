#!/usr/bin/env bash
# Builds and checks meshnode's Debian package for a cross-built binary
# (issue 17: arm64, armhf, riscv64), from its control file and contents:
#   scripts/check-deb.sh --arch arm64|armhf|riscv64 --binary PATH --help-binary PATH [--out DIR]
#                        [--compression xz|gzip|none]  (as scripts/build-deb.sh; default xz)
# --binary is the cross build (scripts/build-cross.sh), --help-binary a
# meshnode this machine runs, for the man page. Checked (dpkg-deb -I/-c):
# Architecture is the one asked for, Package, Version (the workspace's) and
# Depends are there, the package holds /usr/bin/meshnode, the unit, the man
# page and the README, the binary in it is byte-identical to --binary and an
# ELF for that CPU, and the unit runs `meshnode start` as its own user with
# Type=notify. (scripts/test-deb.sh installs the amd64 package into a clean
# Debian root: dpkg -i of a foreign package there needs its CPU.) Each check
# prints one line; any failure exits 1. Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

arch="" binary="" help_binary="" out="" compression=xz
while [ $# -gt 0 ]; do
    case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --help-binary) help_binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --compression) compression="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
# The ELF machine `file` names for each Debian architecture.
case "$arch" in
arm64) machine="ARM aarch64"; class=64 ;;
armhf) machine="ARM, EABI5"; class=32 ;;
riscv64) machine="RISC-V"; class=64 ;;
*) echo "error: --arch must be arm64, armhf or riscv64, not '${arch}'" >&2; exit 2 ;;
esac
[ -x "$binary" ] || { echo "error: --binary '${binary}' is not an executable file" >&2; exit 2; }
[ -x "$help_binary" ] || { echo "error: --help-binary '${help_binary}' is not an executable file" >&2; exit 2; }

fail() { echo "FAIL ($arch): $*" >&2; exit 1; }
ok() { echo "ok ($arch): $*"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
deb=$(bash scripts/build-deb.sh --arch "$arch" --binary "$binary" --help-binary "$help_binary" \
    --compression "$compression" ${out:+--out "$out"} | tail -n1)

info=$(dpkg-deb -I "$deb")
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Architecture)" = "$arch" ] || fail "Architecture is '$(field Architecture)', not $arch"
[ "$(field Package)" = meshnode ] || fail "Package is '$(field Package)'"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
[ "$(field Version)" = "$version" ] || fail "Version is '$(field Version)', the workspace's is $version"
grep -q 'libc6' <<<"$(field Depends)" || fail "Depends names no libc6: '$(field Depends)'"
grep -qE '[[:space:]]postinst([[:space:]]|$)' <<<"$info" || fail "no postinst in the control archive"
ok "control: Package meshnode, Version $version, Architecture $arch, Depends $(field Depends)"

contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/meshnode ./lib/systemd/system/meshnode.service \
    ./usr/share/man/man1/meshnode.1.gz ./usr/share/doc/meshnode/README.md; do
    grep -q " $f\$" <<<"$contents" || fail "the package lacks $f"
done
ok "contents: the binary, the unit, the man page and the README"

dpkg-deb -x "$deb" "$work/root"
cmp -s "$work/root/usr/bin/meshnode" "$binary" || fail "/usr/bin/meshnode is not the binary given"
elf=$(file -b "$work/root/usr/bin/meshnode")
grep -q "ELF ${class}-bit LSB" <<<"$elf" && grep -q "$machine" <<<"$elf" \
    || fail "/usr/bin/meshnode is not a ${class}-bit $machine ELF: $elf"
ok "/usr/bin/meshnode: ${elf%%, BuildID*}"

unit=$work/root/lib/systemd/system/meshnode.service
grep -q '^Type=notify' "$unit" || fail "the unit is not Type=notify"
grep -q '^User=meshnode' "$unit" || fail "the unit does not run as the meshnode user"
grep -q '^ExecStart=.* start' "$unit" || fail "the unit does not run meshnode start"
man_page=$(zcat "$work/root/usr/share/man/man1/meshnode.1.gz")
grep -q '^.SH "meshnode deploy"' <<<"$man_page" || fail "the man page lacks 'meshnode deploy'"
ok "the unit (Type=notify, User=meshnode, meshnode start) and the man page"
echo "$deb"
