#!/usr/bin/env bash
# test-package.sh: check the .ipk packages of package.sh.
#   platform-linux/openwrt/test-package.sh [IPK...]
# Without arguments: every target/openwrt/*.ipk; if there is none, builds
# and packages x86_64-unknown-linux-musl first (build.sh, package.sh).
# For each package: the outer format opkg reads (gzip'd tar of
# ./debian-binary ./data.tar.gz ./control.tar.gz, in that order), the
# control fields, conffiles, the exact file list with modes and owners,
# the binary's architecture (`file`) against the package's Architecture,
# and the feed index (Packages, Packages.gz: size and SHA-256). As root
# with a static busybox (busybox-static) it then installs the package into
# a chroot as opkg would (data, /usr/lib/opkg/info/punchwire.*) with
# stubs of OpenWrt's /lib/functions.sh (default_postinst/default_prerm),
# /etc/rc.common and procd, and runs postinst (enable + start), a start
# with one section enabled (the procd instance it opens) and prerm (stop +
# disable) under busybox ash; an x86_64 binary also runs there. Without
# root or busybox that part is skipped and says so.
# Last line: "N passed, N failed"; exit 1 on a failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tdir=${CARGO_TARGET_DIR:-$root/target}
case "$tdir" in /*) ;; *) tdir="$root/$tdir" ;; esac
out="$tdir/openwrt"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
check() { # NAME EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        bad "$1"
        printf '  expected: %s\n  got:      %s\n' "$(tr '\n' '|' <<<"$2")" "$(tr '\n' '|' <<<"$3")"
    fi
}

ipks=("$@")
if [ ${#ipks[@]} = 0 ]; then
    shopt -s nullglob
    ipks=("$out"/*.ipk)
    shopt -u nullglob
    if [ ${#ipks[@]} = 0 ]; then
        echo "== no packages in $out: building x86_64-unknown-linux-musl"
        "$here/build.sh" x86_64-unknown-linux-musl >/dev/null || { echo "build.sh failed"; exit 1; }
        "$here/package.sh" x86_64-unknown-linux-musl >/dev/null || { echo "package.sh failed"; exit 1; }
        ipks=("$out"/*.ipk)
    fi
fi

version=$(sed -n '/^\[workspace.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")-$(sed -n 's/^PKG_RELEASE:=//p' "$here/Makefile")

# The Rust target whose build an OpenWrt arch name is packaged from, and
# what `file` says about that target's binary.
target_of() {
    case "$1" in
        x86_64) echo x86_64-unknown-linux-musl ;;
        aarch64_*) echo aarch64-unknown-linux-musl ;;
        mipsel_*) echo mipsel-unknown-linux-musl ;;
        mips_*) echo mips-unknown-linux-musl ;;
        arm_*) echo armv7-unknown-linux-musleabihf ;;
    esac
}
file_pattern() {
    case "$1" in
        x86_64-*) echo 'ELF 64-bit LSB .*x86-64' ;;
        aarch64-*) echo 'ELF 64-bit LSB .*ARM aarch64' ;;
        mipsel-*) echo 'ELF 32-bit LSB .*MIPS, MIPS32 rel2' ;;
        mips-*) echo 'ELF 32-bit MSB .*MIPS, MIPS32 rel2' ;;
        armv7-*) echo 'ELF 32-bit LSB .*ARM, EABI5' ;;
    esac
}

expected_files="drwxr-xr-x 0/0 ./
drwxr-xr-x 0/0 ./etc/
drwxr-xr-x 0/0 ./etc/config/
-rw------- 0/0 ./etc/config/punchwire
drwxr-xr-x 0/0 ./etc/init.d/
-rwxr-xr-x 0/0 ./etc/init.d/punchwire
drwxr-xr-x 0/0 ./usr/
drwxr-xr-x 0/0 ./usr/bin/
-rwxr-xr-x 0/0 ./usr/bin/punchwire
drwxr-xr-x 0/0 ./usr/share/
drwxr-xr-x 0/0 ./usr/share/punchwire/
-rw-r--r-- 0/0 ./usr/share/punchwire/punchwire-args.sh"
expected_control_files="drwxr-xr-x 0/0 ./
-rw-r--r-- 0/0 ./conffiles
-rw-r--r-- 0/0 ./control
-rwxr-xr-x 0/0 ./postinst
-rwxr-xr-x 0/0 ./prerm"

# tar -tv as "MODE OWNER NAME" lines.
listing() { tar -tvzf "$1" | awk '{print $1, $2, $6}'; }

# --- the chroot: opkg's install steps, OpenWrt's hooks as stubs -------------
busybox=$(command -v busybox || true)
can_chroot=0
if [ "$(id -u)" = 0 ] && [ -n "$busybox" ] && file -L "$busybox" | grep -q 'statically linked'; then
    can_chroot=1
fi

# stub /lib/functions.sh: the fake UCI, and default_postinst/default_prerm
# as OpenWrt's base-files has them (the init-script part: with
# IPKG_INSTROOT empty, enable unless upgrading, then start; prerm: disable
# unless upgrading, then stop).
write_stubs() {
    local r=$1
    mkdir -p "$r/lib" "$r/tmp" "$r/etc/rc.d"
    cp "$here/fake-openwrt.sh" "$r/lib/fake-openwrt.sh"
    cat >"$r/lib/functions.sh" <<'EOF'
UCI_DIR=/etc/config
FAKE_LOG=/tmp/log
. /lib/fake-openwrt.sh
default_postinst() {
	pkgname=$(basename "${1%.*}")
	for i in $(grep -s "^/etc/init.d/" "${IPKG_INSTROOT}/usr/lib/opkg/info/${pkgname}.list"); do
		[ "$PKG_UPGRADE" = 1 ] || "$i" enable
		"$i" start
	done
	return 0
}
default_prerm() {
	pkgname=$(basename "${1%.*}")
	for i in $(grep -s "^/etc/init.d/" "${IPKG_INSTROOT}/usr/lib/opkg/info/${pkgname}.list"); do
		[ "$PKG_UPGRADE" = 1 ] || "$i" disable
		"$i" stop || true
	done
	return 0
}
EOF
    # stub /etc/rc.common: the init script's shebang interpreter.
    cat >"$r/etc/rc.common" <<'EOF'
#!/bin/sh
initscript=$1
action=$2
name=$(basename "$initscript")
. /lib/functions.sh
procd_open_instance() { echo "open $1" >>/tmp/procd; }
procd_set_param() { echo "set $*" >>/tmp/procd; }
procd_append_param() { echo "append $*" >>/tmp/procd; }
procd_close_instance() { echo "close" >>/tmp/procd; }
procd_add_reload_trigger() { :; }
. "$initscript"
echo "$name $action" >>/tmp/rc.log
case "$action" in
	enable) ln -sf "../init.d/$name" "/etc/rc.d/S$START$name" ;;
	disable) rm -f /etc/rc.d/S[0-9][0-9]"$name" ;;
	start) start_service ;;
	stop) ;;
	*) exit 1 ;;
esac
EOF
    mkdir -p "$r/bin" "$r/usr/bin"
    cp "$busybox" "$r/bin/busybox"
    for a in sh ash awk grep sed basename ln rm cat mkdir readlink ls; do
        ln -sf busybox "$r/bin/$a"
    done
}

for ipk in "${ipks[@]}"; do
    name=$(basename "$ipk")
    echo "== $name"
    w="$tmp/$name"
    mkdir -p "$w"
    # outer format
    check "$name: outer is gzip (not ar)" "1f8b" "$(head -c 2 "$ipk" | od -An -tx1 | tr -d ' \n')"
    check "$name: outer members, in order" "./debian-binary ./data.tar.gz ./control.tar.gz" \
        "$(tar -tzf "$ipk" | tr '\n' ' ' | sed 's/ $//')"
    check "$name: debian-binary" "2.0" "$(tar -xzOf "$ipk" ./debian-binary)"
    tar -xzf "$ipk" -C "$w" || { bad "$name: cannot unpack"; continue; }
    check "$name: control.tar.gz files, modes, owners" "$expected_control_files" "$(listing "$w/control.tar.gz")"
    check "$name: data.tar.gz files, modes, owners" "$expected_files" "$(listing "$w/data.tar.gz")"
    mkdir -p "$w/c" "$w/d"
    tar -xzf "$w/control.tar.gz" -C "$w/c"
    tar -xzpf "$w/data.tar.gz" -C "$w/d"
    ctl="$w/c/control"
    field() { sed -n "s/^$1: //p" "$ctl"; }
    arch=$(field Architecture)
    check "$name: Package" punchwire "$(field Package)"
    check "$name: Version" "$version" "$(field Version)"
    check "$name: file name is punchwire_VERSION_ARCH.ipk" "punchwire_${version}_${arch}.ipk" "$name"
    check "$name: Installed-Size = data tar size" "$(gzip -dc "$w/data.tar.gz" | wc -c)" "$(field Installed-Size)"
    for f in Section License Source Description; do
        [ -n "$(field "$f")" ] && ok "$name: $f present" || bad "$name: $f missing"
    done
    if awk 'NF == 0 { exit 1 } /^[^ ]/ && !/^[A-Za-z0-9-]+: / { exit 1 }' "$ctl"; then
        ok "$name: control is one paragraph of 'Field: value' and continuation lines"
    else
        bad "$name: control has a blank or malformed line"
    fi
    check "$name: conffiles" "/etc/config/punchwire" "$(cat "$w/c/conffiles")"
    target=$(target_of "$arch")
    if [ -n "$target" ] && "$here/package.sh" --arches "$target" | tr ' ' '\n' | grep -qx "$arch"; then
        ok "$name: $arch is one of $target's arch names"
    else
        bad "$name: unknown architecture '$arch'"
        continue
    fi
    desc=$(file -b "$w/d/usr/bin/punchwire")
    if grep -Eq "$(file_pattern "$target")" <<<"$desc" && grep -Eq 'static(-pie)? linked|statically linked' <<<"$desc"; then
        ok "$name: binary is $target, static ($desc)"
    else
        bad "$name: binary is not a static $target: $desc"
    fi
    for f in init.d/punchwire config/punchwire; do
        cmp -s "$w/d/etc/$f" "$here/files/$(sed 's|init.d/punchwire|punchwire.init|; s|config/punchwire|punchwire.config|' <<<"$f")" &&
            ok "$name: /etc/$f is the repository's" || bad "$name: /etc/$f differs from files/"
    done
    # the feed index
    entry=$(awk -v f="$name" 'BEGIN { RS = ""; ORS = "\n" } $0 ~ "\nFilename: " f "\n" { print }' "$out/Packages" 2>/dev/null)
    check "$name: Packages entry Size" "$(stat -c %s "$ipk")" "$(sed -n 's/^Size: //p' <<<"$entry")"
    check "$name: Packages entry SHA256sum" "$(sha256sum "$ipk" | cut -d' ' -f1)" "$(sed -n 's/^SHA256sum: //p' <<<"$entry")"
    check "$name: Packages entry Architecture" "$arch" "$(sed -n 's/^Architecture: //p' <<<"$entry")"

    if [ "$can_chroot" = 0 ]; then
        echo "SKIP $name: postinst/prerm in a chroot (needs root and a static busybox: apt-get install busybox-static)"
        continue
    fi
    # install as opkg does: the data, then the control files as
    # /usr/lib/opkg/info/punchwire.*, the file list, then postinst configure
    r="$w/root"
    mkdir -p "$r"
    tar -xzpf "$w/data.tar.gz" -C "$r"
    write_stubs "$r"
    info="$r/usr/lib/opkg/info"
    mkdir -p "$info"
    for f in control conffiles postinst prerm; do cp -p "$w/c/$f" "$info/punchwire.$f"; done
    tar -tzf "$w/data.tar.gz" | grep -v '/$' | sed 's|^\.||' >"$info/punchwire.list"
    if chroot "$r" /usr/lib/opkg/info/punchwire.postinst configure >"$w/post.out" 2>&1; then
        ok "$name: postinst exits 0"
    else
        bad "$name: postinst failed: $(cat "$w/post.out")"
    fi
    check "$name: postinst enabled and started the service" "punchwire enable
punchwire start" "$(cat "$r/tmp/rc.log" 2>/dev/null)"
    check "$name: enabled = /etc/rc.d/S95punchwire -> ../init.d/punchwire" "../init.d/punchwire" \
        "$(readlink "$r/etc/rc.d/S95punchwire")"
    check "$name: shipped config starts no instance" "" "$(cat "$r/tmp/procd" 2>/dev/null)"
    # the user enables a section; the installed init script and
    # /usr/share/punchwire/punchwire-args.sh turn it into a procd instance
    awk '/^config peer .office.$/ { s = 1 } /^config peer .office_udp.$/ { s = 0 }
        s && /option enabled/ { sub(/0/, "1") } { print }' "$r/etc/config/punchwire" >"$w/cfg" &&
        cat "$w/cfg" >"$r/etc/config/punchwire"
    chroot "$r" /etc/init.d/punchwire start >/dev/null 2>&1
    check "$name: start with 'office' enabled opens its procd instance" "open office
set command /usr/bin/punchwire
append command tcp
append command --name office
append command 198.51.100.2
append command --timeout
append command 300
append command --listen
append command 2222
set respawn 3600 5 0
set stdout 1
set stderr 1
close" "$(cat "$r/tmp/procd" 2>/dev/null)"
    : >"$r/tmp/rc.log"
    if chroot "$r" /usr/lib/opkg/info/punchwire.prerm remove >"$w/prerm.out" 2>&1; then
        ok "$name: prerm exits 0"
    else
        bad "$name: prerm failed: $(cat "$w/prerm.out")"
    fi
    check "$name: prerm disabled and stopped the service" "punchwire disable
punchwire stop" "$(cat "$r/tmp/rc.log")"
    [ ! -e "$r/etc/rc.d/S95punchwire" ] && ok "$name: /etc/rc.d/S95punchwire removed" ||
        bad "$name: /etc/rc.d/S95punchwire still there"
    if [ "$arch" = x86_64 ]; then
        check "$name: the packaged binary runs (chroot, --version)" "punchwire ${version%-*}" \
            "$(chroot "$r" /usr/bin/punchwire --version 2>&1)"
    fi
done

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
