#!/usr/bin/env bash
# Package a static punchwire (from build.sh) as OpenWrt .ipk files, and
# index every package in the output directory as an opkg feed.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: platform-linux/openwrt/package.sh TARGET
       platform-linux/openwrt/package.sh --index
       platform-linux/openwrt/package.sh --arches TARGET
       platform-linux/openwrt/package.sh --help

Packs target/TARGET/release/punchwire (run build.sh TARGET first) with the
files of platform-linux/openwrt/files into one .ipk per OpenWrt package
architecture that the binary runs on:

    target/openwrt/punchwire_VERSION_ARCH.ipk

then rewrites target/openwrt/Packages and Packages.gz for every .ipk in
that directory, so the directory serves as an opkg feed. The binary is
static, so one build serves every OpenWrt architecture of its instruction
set; opkg only installs a package whose Architecture is in its arch list,
hence one identical package per name:

  aarch64-unknown-linux-musl      aarch64_generic aarch64_cortex-a53
                                  aarch64_cortex-a72 aarch64_cortex-a76
  x86_64-unknown-linux-musl       x86_64
  mipsel-unknown-linux-musl       mipsel_24kc mipsel_74kc mipsel_mips32
  mips-unknown-linux-musl         mips_24kc mips_mips32
  armv7-unknown-linux-musleabihf  arm_cortex-a7_neon-vfpv4 arm_cortex-a9_vfpv3-d16
                                  arm_cortex-a15_neon-vfpv4 arm_cortex-a7_vfpv4

(MIPS32r2 soft-float; ARMv7-A hard-float with VFPv3-D16, no NEON: runs on
every listed ARM core.) --arches TARGET prints that list; --index only
rewrites the feed index.

The package is the opkg format of OpenWrt <= 24.10 as OpenWrt's own
scripts/ipkg-build writes it: a gzip'd tar (GNU format, numeric owner 0:0,
sorted names, mtime = the last commit) holding ./debian-binary ("2.0"),
./data.tar.gz and ./control.tar.gz. OpenWrt's opkg reads only that outer
format, not the Debian-style ar archive. control.tar.gz has control,
conffiles (/etc/config/punchwire: an upgrade keeps the user's edits),
postinst and prerm (OpenWrt's default_postinst/default_prerm: enable and
start /etc/init.d/punchwire on install, stop and disable it on removal).
VERSION is the workspace version and the Makefile's PKG_RELEASE
(0.1.0-1). Needs GNU tar, gzip, sha256sum.

Exit codes: 0 done, 1 missing binary or tool, 2 bad arguments.
USAGE
}

arches_of() {
    case "$1" in
        aarch64-unknown-linux-musl) echo "aarch64_generic aarch64_cortex-a53 aarch64_cortex-a72 aarch64_cortex-a76" ;;
        x86_64-unknown-linux-musl) echo "x86_64" ;;
        mipsel-unknown-linux-musl) echo "mipsel_24kc mipsel_74kc mipsel_mips32" ;;
        mips-unknown-linux-musl) echo "mips_24kc mips_mips32" ;;
        armv7-unknown-linux-musleabihf) echo "arm_cortex-a7_neon-vfpv4 arm_cortex-a9_vfpv3-d16 arm_cortex-a15_neon-vfpv4 arm_cortex-a7_vfpv4" ;;
        *) return 1 ;;
    esac
}

mode=package
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") echo "package.sh: missing TARGET (see --help)" >&2; exit 2 ;;
    --index) mode=index; [ $# -eq 1 ] || { echo "package.sh: --index takes no TARGET" >&2; exit 2; } ;;
    --arches)
        [ $# -eq 2 ] || { echo "package.sh: --arches TARGET" >&2; exit 2; }
        arches_of "$2" || { echo "package.sh: unknown target '$2'" >&2; exit 2; }
        exit 0 ;;
    *)
        [ $# -eq 1 ] || { echo "package.sh: expected one TARGET (see --help)" >&2; exit 2; }
        arches_of "$1" >/dev/null || {
            echo "package.sh: unknown target '$1' (see --help)" >&2
            exit 2
        } ;;
esac

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tdir=${CARGO_TARGET_DIR:-$root/target}
case "$tdir" in /*) ;; *) tdir="$root/$tdir" ;; esac
out="$tdir/openwrt"
say() { echo "package.sh: $*" >&2; }

for t in tar gzip sha256sum; do
    command -v "$t" >/dev/null || { say "$t is missing"; exit 1; }
done
tar --version 2>/dev/null | grep -q 'GNU tar' || { say "GNU tar is needed (--sort, --format=gnu)"; exit 1; }

# Reproducible: every timestamp is the last commit's (or SOURCE_DATE_EPOCH).
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
tarx=(tar --format=gnu --numeric-owner --owner=0 --group=0 --sort=name --mtime="@$epoch")

# tar + gzip -n of the given paths, relative to the current directory.
targz() {
    local dest=$1
    shift
    "${tarx[@]}" -cf - "$@" | gzip -n -9 >"$dest"
}

write_index() {
    mkdir -p "$out"
    local idx="$out/Packages.tmp" f ctl
    : >"$idx"
    shopt -s nullglob
    for f in "$out"/*.ipk; do
        # The control file from the package itself, then the feed fields.
        ctl=$(tar -xzOf "$f" ./control.tar.gz | tar -xzOf - ./control)
        {
            printf '%s\n' "$ctl" | sed -n '/^Description:/q;p'
            echo "Filename: $(basename "$f")"
            echo "Size: $(stat -c %s "$f")"
            echo "SHA256sum: $(sha256sum "$f" | cut -d' ' -f1)"
            printf '%s\n' "$ctl" | sed -n '/^Description:/,$p'
            echo
        } >>"$idx"
    done
    shopt -u nullglob
    mv "$idx" "$out/Packages"
    gzip -n -9 -c "$out/Packages" >"$out/Packages.gz"
    say "indexed $(grep -c '^Package:' "$out/Packages" || true) package(s) in $out/Packages{,.gz}"
}

if [ "$mode" = index ]; then
    write_index
    exit 0
fi

target=$1
bin="$tdir/$target/release/punchwire"
if [ ! -x "$bin" ]; then
    say "$bin not found; run platform-linux/openwrt/build.sh $target first"
    exit 1
fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
mk_version=$(sed -n 's/^PKG_VERSION:=//p' "$here/Makefile")
release=$(sed -n 's/^PKG_RELEASE:=//p' "$here/Makefile")
license=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^license *= *"\(.*\)"/\1/p' "$root/Cargo.toml")
if [ -z "$version" ] || [ -z "$release" ] || [ "$version" != "$mk_version" ]; then
    say "version mismatch: Cargo.toml '$version', Makefile PKG_VERSION '$mk_version' (PKG_RELEASE '$release')"
    exit 1
fi
pkgver="$version-$release"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# data.tar.gz: the files, modes as OpenWrt's INSTALL_BIN / INSTALL_CONF /
# INSTALL_DATA give them (0755 / 0600 / 0644).
d="$work/data"
install -d -m 0755 "$d/usr/bin" "$d/etc/init.d" "$d/etc/config" "$d/usr/share/punchwire"
install -m 0755 "$bin" "$d/usr/bin/punchwire"
install -m 0755 "$here/files/punchwire.init" "$d/etc/init.d/punchwire"
install -m 0600 "$here/files/punchwire.config" "$d/etc/config/punchwire"
install -m 0644 "$here/files/punchwire-args.sh" "$d/usr/share/punchwire/punchwire-args.sh"
chmod 0755 "$d"
(cd "$d" && targz "$work/data.tar.gz" .)
installed_size=$(gzip -dc "$work/data.tar.gz" | wc -c)

# The maintainer scripts are OpenWrt's generated ones (package-pack.mk):
# /lib/functions.sh's default_postinst enables and starts every
# /etc/init.d script of the package (only enables it when installing
# into an image, IPKG_INSTROOT set), default_prerm stops and disables it.
c="$work/control"
install -d -m 0755 "$c"
cat >"$c/postinst" <<'EOF'
#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
EOF
cat >"$c/prerm" <<'EOF'
#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
EOF
chmod 0755 "$c/postinst" "$c/prerm"
echo /etc/config/punchwire >"$c/conffiles"
chmod 0644 "$c/conffiles"

mkdir -p "$out"
for arch in $(arches_of "$target"); do
    cat >"$c/control" <<EOF
Package: punchwire
Version: $pkgver
Source: platform-linux/openwrt
SourceName: punchwire
License: $license
Section: net
SourceDateEpoch: $epoch
URL: https://example.invalid/punchwire
Architecture: $arch
Installed-Size: $installed_size
Description: NAT traversal without a server: TCP hole punching and a udphp-compatible UDP tunnel
 punchwire punches a TCP connection or a UDP tunnel between two hosts
 behind NATs, by a clock-derived port schedule (no rendezvous server), and
 relays a local TCP port through it. /etc/config/punchwire holds one
 'peer' section per tunnel; /etc/init.d/punchwire runs and respawns one
 punchwire per enabled section. Static binary built from $target.
EOF
    chmod 0644 "$c/control"
    (cd "$c" && targz "$work/control.tar.gz" .)
    echo 2.0 >"$work/debian-binary"
    chmod 0644 "$work/debian-binary" "$work/control.tar.gz" "$work/data.tar.gz"
    ipk="$out/punchwire_${pkgver}_${arch}.ipk"
    (cd "$work" && "${tarx[@]}" -cf - ./debian-binary ./data.tar.gz ./control.tar.gz | gzip -n -9 >"$ipk.tmp")
    mv "$ipk.tmp" "$ipk"
    bytes=$(stat -c %s "$ipk")
    printf '%d bytes (%d KiB) %s\n' "$bytes" $(((bytes + 1023) / 1024)) "$ipk"
done
write_index
