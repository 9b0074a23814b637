#!/usr/bin/env bash
# Build a static (musl) punchwire binary for one target.
set -euo pipefail

# Tier 3 tools, pinned (see tier3_tools below). Change them together and
# re-measure the sizes in the README.
NIGHTLY=${PUNCHWIRE_NIGHTLY:-nightly-2026-05-20}
ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.15.2

usage() {
    cat <<USAGE
Usage: platform-linux/openwrt/build.sh TARGET
       platform-linux/openwrt/build.sh --tools
       platform-linux/openwrt/build.sh --help

Builds the static punchwire binary (crate punchwire-linux, release profile:
opt-level "s", LTO, panic=abort, stripped) for TARGET. The last line printed
is the stripped binary's size and path:

    <bytes> bytes (<KiB> KiB) <path>

Tier 2 targets: stable Rust and rust-lld (configured in .cargo/config.toml);
installs the target's standard library with \`rustup target add\` if missing.
  aarch64-unknown-linux-musl       64-bit ARM routers (e.g. OpenWrt armsr/armv8, mediatek/filogic)
  x86_64-unknown-linux-musl        x86-64 routers and VMs (OpenWrt x86/64)

Tier 3 targets (Rust ships no standard library for them): a pinned nightly
($NIGHTLY; \$PUNCHWIRE_NIGHTLY overrides) rebuilds std with -Zbuild-std
(std,panic_abort; std feature optimize_for_size, no backtrace symbolizer)
and cargo-zigbuild links with zig's musl (fully static, soft-float on MIPS).
Unwind tables are left out (panic=abort); MIPS binaries also lose their
.pdr section (llvm-objcopy), which only debuggers read. These 32-bit
targets use musl's 64-bit time_t (the libc crate's musl 1.2
configuration, for std too), so they keep working after 2038-01-19.
  mipsel-unknown-linux-musl        MIPS32r2 little endian, e.g. OpenWrt ramips/mt7621 (mipsel_24kc)
  mips-unknown-linux-musl          MIPS32r2 big endian, e.g. OpenWrt ath79 (mips_24kc)
  armv7-unknown-linux-musleabihf   32-bit ARM with VFP, e.g. OpenWrt ipq40xx (arm_cortex-a7_neon-vfpv4),
                                   mvebu (arm_cortex-a9_vfpv3-d16)
Missing tier 3 tools are installed first (needs the network): the nightly
with rust-src and llvm-tools (rustup), cargo-zigbuild $ZIGBUILD_VERSION
(cargo install --locked) and zig from PyPI's ziglang $ZIGLANG_VERSION (pip install
--target into ~/.cache/punchwire, or \$PUNCHWIRE_TOOLS; python3-pip is
installed with apt-get when run as root and missing). --tools only installs
them.

Exit codes: 0 built (or tools installed), 1 build or tool install failed,
2 bad arguments or unknown target.
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
    aarch64-unknown-linux-musl | x86_64-unknown-linux-musl) tier=2 ;;
    mipsel-unknown-linux-musl | mips-unknown-linux-musl | armv7-unknown-linux-musleabihf) tier=3 ;;
    --tools) tier=tools ;;
    *)
        echo "build.sh: unknown target '$target' (supported: aarch64-unknown-linux-musl, x86_64-unknown-linux-musl, mipsel-unknown-linux-musl, mips-unknown-linux-musl, armv7-unknown-linux-musleabihf; see --help)" >&2
        exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

say() { echo "build.sh: $*" >&2; }

# Installs what is missing for the tier 3 targets and exports PYTHONPATH so
# cargo-zigbuild's `python3 -m ziglang` finds the pinned zig.
tier3_tools() {
    if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
        say "installing $NIGHTLY with rust-src and llvm-tools (rustup)"
        rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src,llvm-tools >&2 || return 1
    fi
    local have
    have=$(rustup component list --toolchain "$NIGHTLY" --installed)
    for c in rust-src llvm-tools; do
        if ! grep -q "^$c" <<<"$have"; then
            say "adding $c to $NIGHTLY (rustup)"
            rustup component add --toolchain "$NIGHTLY" "$c" >&2 || return 1
        fi
    done

    if [ "$(cargo-zigbuild --version 2>/dev/null)" != "cargo-zigbuild $ZIGBUILD_VERSION" ]; then
        say "installing cargo-zigbuild $ZIGBUILD_VERSION (cargo install --locked)"
        cargo install --locked --version "$ZIGBUILD_VERSION" cargo-zigbuild >&2 || return 1
    fi

    # A private directory rather than site-packages: no virtualenv needed,
    # and Debian's pip allows --target despite PEP 668.
    local zigdir="${PUNCHWIRE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/punchwire}/ziglang-$ZIGLANG_VERSION"
    export PYTHONPATH="$zigdir${PYTHONPATH:+:$PYTHONPATH}"
    if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
        if ! python3 -m pip --version >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            say "installing python3-pip (apt-get)"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >/dev/null || return 1
        fi
        say "installing zig (PyPI ziglang $ZIGLANG_VERSION) into $zigdir"
        rm -rf "$zigdir"
        python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --target "$zigdir" \
            "ziglang==$ZIGLANG_VERSION" >&2 || return 1
        [ "$(python3 -m ziglang version 2>/dev/null)" = "$ZIGLANG_VERSION" ] || {
            say "zig $ZIGLANG_VERSION does not run from $zigdir"
            return 1
        }
    fi
}

if [ "$tier" = tools ]; then
    tier3_tools || { say "installing the tier 3 tools failed"; exit 1; }
    say "tier 3 tools ready: $NIGHTLY, cargo-zigbuild $ZIGBUILD_VERSION, zig $(python3 -m ziglang version)"
    exit 0
fi

bin="${CARGO_TARGET_DIR:-$root/target}/$target/release/punchwire"
case "$bin" in /*) ;; *) bin="$root/$bin" ;; esac

if [ "$tier" = 2 ]; then
    if ! rustup target list --installed | grep -qx "$target"; then
        say "installing the $target standard library (rustup target add)"
        rustup target add "$target" >&2
    fi
    cargo build --release -p punchwire-linux --target "$target" >&2 || exit 1
else
    tier3_tools || { say "installing the tier 3 tools failed"; exit 1; }
    # Target-specific flags from the environment, so .cargo/config.toml and
    # an OpenWrt SDK build (its own linker and flags) stay untouched:
    # +crt-static: these targets link dynamically by default;
    # link-self-contained=no: zig brings the musl CRT objects and libc (Rust
    # has no self-contained ones for tier 3 targets);
    # force-unwind-tables=no: nothing unwinds with panic=abort and no
    # backtrace symbolizer.
    # The linker may warn that rustlib/$target/lib is missing: Rust ships
    # nothing there for a tier 3 target; -Zbuild-std supplies std instead.
    # 64-bit time_t (all three tier 3 targets are 32-bit): musl >= 1.2
    # (zig's is 1.2.5) has only 64-bit time_t, and its old 32-bit symbols
    # (clock_gettime, stat, ...) are compatibility shims that fail with
    # EOVERFLOW after 2038-01-19, which std's SystemTime::now turns into a
    # panic. The libc crate links the __*_time64 symbols and uses 64-bit
    # struct layouts in its musl 1.2 configuration: --cfg
    # libc_unstable_musl_v1_2 for our libc (0.2.191) and
    # RUST_LIBC_UNSTABLE_MUSL_V1_2_3=1 for the older libc that -Zbuild-std
    # builds std with (0.2.185 in this nightly). Both are read by libc's
    # build script, so std and punchwire agree on time_t.
    export RUST_LIBC_UNSTABLE_MUSL_V1_2_3=1
    triple_var=$(tr 'a-z-' 'A-Z_' <<<"$target")
    export "CARGO_TARGET_${triple_var}_RUSTFLAGS=-C target-feature=+crt-static -C link-self-contained=no -C force-unwind-tables=no --cfg libc_unstable_musl_v1_2"
    cargo "+$NIGHTLY" zigbuild --release -p punchwire-linux --target "$target" \
        -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size >&2 || exit 1
    case "$target" in
        mips*)
            # .pdr (MIPS procedure descriptors) is not loaded and survives
            # strip: about 60 KB of the file.
            objcopy="$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/$(rustup run "$NIGHTLY" rustc -vV | sed -n 's/^host: //p')/bin/llvm-objcopy"
            if [ -x "$bin" ]; then
                "$objcopy" --remove-section=.pdr "$bin" || { say "removing .pdr from $bin failed"; exit 1; }
            fi
            ;;
    esac
fi

if [ ! -x "$bin" ]; then
    say "build finished but $bin is missing"
    exit 1
fi
# The release profile strips already (strip = true); check it stayed so.
if command -v file >/dev/null && file "$bin" | grep -q 'not stripped'; then
    say "warning: $bin does not look stripped"
fi
bytes=$(stat -c %s "$bin")
printf '%d bytes (%d KiB) %s\n' "$bytes" $(((bytes + 1023) / 1024)) "$bin"
