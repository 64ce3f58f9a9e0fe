#!/usr/bin/env bash
# Tests meshnode's Debian package in a clean Debian 12 root:
#   scripts/test-deb.sh [--binary PATH]    (as root; default: the debug build)
# Builds the amd64 package (scripts/build-deb.sh), checks its files, then
# installs it with dpkg -i into a minimal debootstrapped bookworm root with
# systemd, as on a board
# (cached in $MESHNODE_DEBROOT_CACHE, default /var/tmp/meshnode-debroot-bookworm-systemd.tar.gz)
# and checks the binary runs there, the system user, the data directory, the
# link the service runs and the unit (systemd-analyze verify against that
# root); installs it again (an upgrade), then purges it and checks that the
# user and the data are gone. Each check prints one line; any failure exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

binary="${CARGO_TARGET_DIR:-$PWD/target}/debug/meshnode"
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "error: test-deb.sh needs root (dpkg -i in a chroot)" >&2; exit 2; }
for tool in debootstrap dpkg-deb systemd-analyze chroot strip; do
    command -v "$tool" >/dev/null || { echo "error: $tool is missing (scripts/test-all.sh installs it)" >&2; exit 2; }
done

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

work=$(mktemp -d)
cleanup() {
    for m in proc; do umount "$work/root/$m" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# A stripped copy: the package's contents are what is tested, and a debug
# build is 400 MB with its symbols.
strip -o "$work/meshnode" "$binary"
deb=$(bash scripts/build-deb.sh --arch amd64 --binary "$work/meshnode" --out "$work" \
    --compression gzip | tail -n1)
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/meshnode ./lib/systemd/system/meshnode.service \
    ./usr/share/man/man1/meshnode.1.gz ./usr/share/doc/meshnode/README.md; do
    grep -q " $f\$" <<<"$contents" || fail "the package lacks $f"
done
ok "the package holds the binary, the unit, the man page and the README"
# The listing is read whole first: under pipefail, `grep -q` stopping at the
# first match made tar die of SIGPIPE, and a package with a postinst failed.
control=$(dpkg-deb --ctrl-tarfile "$deb" | tar -t)
grep -q postinst <<<"$control" || fail "the package has no postinst"
man_page=$(dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/share/man/man1/meshnode.1.gz | zcat)
grep -q '^.SH "meshnode deploy"' <<<"$man_page" || fail "the man page lacks 'meshnode deploy'"
ok "the man page has a section per command"

cache="${MESHNODE_DEBROOT_CACHE:-/var/tmp/meshnode-debroot-bookworm-systemd.tar.gz}"
if [ ! -s "$cache" ]; then
    echo "debootstrapping a minimal bookworm root into $cache (once; a few minutes)"
    debootstrap --variant=minbase --include=systemd bookworm "$work/fresh" http://deb.debian.org/debian \
        >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap"; }
    tar -C "$work/fresh" -czf "$cache.tmp" . && mv "$cache.tmp" "$cache"
    rm -rf "$work/fresh"
fi
mkdir "$work/root"
tar -C "$work/root" -xzf "$cache"
root="$work/root"
mount -t proc proc "$root/proc"
cp "$deb" "$root/tmp/meshnode.deb"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

in_root dpkg -i /tmp/meshnode.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
ok "dpkg -i in a clean bookworm root"
version=$(in_root /usr/bin/meshnode --version) || fail "the installed binary does not run"
ok "the installed binary runs: $version"
passwd_line=$(in_root getent passwd meshnode) || fail "no meshnode user"
IFS=: read -r _ _ uid _ _ home shell <<<"$passwd_line"
[ "$uid" -lt 1000 ] || fail "the meshnode user is not a system user (uid $uid)"
[ "$home" = /var/lib/meshnode ] || fail "its home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "its shell is $shell"
ok "a system user meshnode (uid $uid), home /var/lib/meshnode, no login"
stat_line=$(in_root stat -c '%U:%G %a' /var/lib/meshnode)
[ "$stat_line" = "meshnode:meshnode 700" ] || fail "/var/lib/meshnode is $stat_line"
ok "/var/lib/meshnode belongs to meshnode, mode 700"
link=$(readlink "$root/var/lib/meshnode/bin/current") || fail "no bin/current link"
[ "$link" = /usr/bin/meshnode ] || fail "bin/current points at $link"
ok "the service runs /var/lib/meshnode/bin/current -> /usr/bin/meshnode"
grep -q '^Type=notify' "$root/lib/systemd/system/meshnode.service" || fail "the unit is not Type=notify"
grep -q '^WatchdogSec=' "$root/lib/systemd/system/meshnode.service" || fail "the unit has no watchdog"
systemd-analyze verify --root="$root" /lib/systemd/system/meshnode.service >"$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; fail "systemd-analyze verify"; }
grep . "$work/verify.log" && fail "systemd-analyze verify warned (above)"
ok "systemd-analyze verify --root: the unit is valid"
[ -L "$root/etc/systemd/system/multi-user.target.wants/meshnode.service" ] \
    || fail "postinst did not enable the service"
ok "the service is enabled (multi-user.target wants it)"

in_root dpkg -i /tmp/meshnode.deb >"$work/dpkg2.log" 2>&1 || { cat "$work/dpkg2.log" >&2; fail "dpkg -i again"; }
[ "$(readlink "$root/var/lib/meshnode/bin/current")" = /usr/bin/meshnode ] || fail "an upgrade lost the link"
ok "installing it again (an upgrade) keeps the user, the data and the link"

in_root dpkg --purge meshnode >"$work/purge.log" 2>&1 || { cat "$work/purge.log" >&2; fail "dpkg --purge"; }
in_root getent passwd meshnode >/dev/null && fail "purge left the meshnode user"
[ -e "$root/var/lib/meshnode" ] && fail "purge left /var/lib/meshnode"
[ -e "$root/usr/bin/meshnode" ] && fail "purge left /usr/bin/meshnode"
ok "dpkg --purge removes the binary, the user and the data"
echo "deb package test: all checks passed"
