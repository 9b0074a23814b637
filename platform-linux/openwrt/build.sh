#!/usr/bin/env bash
# Build a static (musl) punchwire binary for one target.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: platform-linux/openwrt/build.sh TARGET
       platform-linux/openwrt/build.sh --help

Builds the static punchwire binary (crate punchwire-linux, release profile:
opt-level "s", LTO, panic=abort, stripped) for TARGET with stable Rust and
rust-lld (configured in .cargo/config.toml). Installs the target's standard
library with `rustup target add` if it is missing. The last line printed is
the stripped binary's size and path:

    <bytes> bytes (<KiB> KiB) <path>

Supported targets:
  aarch64-unknown-linux-musl     64-bit ARM routers (e.g. OpenWrt armsr/armv8, mediatek/filogic)
  x86_64-unknown-linux-musl      x86-64 routers and VMs (OpenWrt x86/64)

Not supported by this script yet (Rust tier 3 targets: need nightly
-Zbuild-std and a musl sysroot): mipsel-unknown-linux-musl,
mips-unknown-linux-musl, armv7-unknown-linux-musleabihf.

Exit codes: 0 built, 1 build failed, 2 bad arguments or unknown target,
3 target known but not supported by this script yet.
USAGE
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") echo "build.sh: missing TARGET (see --help)" >&2; exit 2 ;;
esac
if [ $# -ne 1 ]; then
    echo "build.sh: expected exactly one TARGET, got $# arguments (see --help)" >&2
    exit 2
fi
target=$1
case "$target" in
    aarch64-unknown-linux-musl | x86_64-unknown-linux-musl) ;;
    mipsel-unknown-linux-musl | mips-unknown-linux-musl | armv7-unknown-linux-musleabihf)
        echo "build.sh: $target is not supported by this script yet (tier 3 target: needs nightly -Zbuild-std and a musl sysroot)" >&2
        exit 3 ;;
    *)
        echo "build.sh: unknown target '$target' (supported: aarch64-unknown-linux-musl, x86_64-unknown-linux-musl; see --help)" >&2
        exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

if ! rustup target list --installed | grep -qx "$target"; then
    echo "build.sh: installing the $target standard library (rustup target add)" >&2
    rustup target add "$target" >&2
fi

cargo build --release -p punchwire-linux --target "$target" >&2 || exit 1

bin="${CARGO_TARGET_DIR:-$root/target}/$target/release/punchwire"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac
if [ ! -x "$bin" ]; then
    echo "build.sh: build finished but $bin is missing" >&2
    exit 1
fi
# The release profile strips already (strip = true); check it stayed so.
if command -v file >/dev/null && file "$bin" | grep -q 'not stripped'; then
    echo "build.sh: warning: $bin does not look stripped" >&2
fi
bytes=$(stat -c %s "$bin")
printf '%d bytes (%d KiB) %s\n' "$bytes" $(((bytes + 1023) / 1024)) "$bin"
