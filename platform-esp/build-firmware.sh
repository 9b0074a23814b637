#!/usr/bin/env bash
# Builds the ESP32-C3 firmware (platform-esp/firmware) in release mode.
#
# The PW_* variables in the environment configure the image (see
# platform-esp/firmware/README.md); unset ones take harmless defaults.
# Prints a size report and everything else to stderr; the LAST line of
# stdout is the ELF's absolute path. With espflash on PATH it also writes
# the app image ELF.bin (`espflash save-image`); flashing the ELF with
# `espflash flash` is the simpler way onto a board.
set -euo pipefail
cd "$(dirname "$0")/firmware"

target=riscv32imc-unknown-none-elf
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >&2
fi

# Inside this directory so that its .cargo/config.toml (target, linker
# script) applies; the host workspace never reads it.
cargo build --release >&2

target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
elf="$target_dir/$target/release/punchwire-esp-firmware"
[ -f "$elf" ] || { echo "build-firmware: no ELF at $elf" >&2; exit 1; }

python3 - "$elf" >&2 <<'EOF'
# Size report from the ELF section headers (no llvm-size needed).
import struct, sys

path = sys.argv[1]
data = open(path, "rb").read()
if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
    sys.exit(f"{path}: not a little-endian ELF32 file")
shoff, = struct.unpack_from("<I", data, 0x20)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
sections = []
for i in range(shnum):
    name, typ, flags, addr, off, size = struct.unpack_from("<IIIIII", data, shoff + i * shentsize)
    sections.append((name, typ, flags, off, size))
str_off = sections[shstrndx][3]

def name_of(n):
    end = data.index(b"\0", str_off + n)
    return data[str_off + n:end].decode()

SHT_NOBITS, SHF_ALLOC = 8, 2
sec = {}
for name, typ, flags, _, size in sections:
    if flags & SHF_ALLOC and size:
        sec[name_of(name)] = (typ, size)

def total(prefixes, nobits=None):
    s = 0
    for n, (typ, size) in sec.items():
        if any(n == p or n.startswith(p + ".") for p in prefixes):
            if nobits is None or (typ == SHT_NOBITS) == nobits:
                s += size
    return s

text = total([".text"])
rodata = total([".rodata", ".flash.appdesc"])
iram = total([".trap", ".rwtext", ".rtc_fast.text"])
data_ = total([".data", ".rtc_fast.data"], nobits=False)
bss = total([".bss", ".noinit", ".rtc_fast.bss"])
flash = text + rodata + iram + data_
reclaimed = total([".dram2_uninit"])
stack = total([".stack"])

kb = lambda b: f"{b / 1024:.1f} KB"
print(f"firmware size ({path}):")
print(f"  flash: {flash} bytes ({kb(flash)}): .text {text}, .rodata {rodata}, "
      f"RAM code (.trap/.rwtext, copied to IRAM) {iram}, .data initialisers {data_}")
print(f"  static RAM: .data+.bss {data_ + bss} bytes ({kb(data_ + bss)}) "
      f"+ RAM code {iram} = {kb(data_ + bss + iram)} of the 313 KB main SRAM "
      f"(.bss includes the DRAM part of the heap)")
print(f"  reclaimed bootloader RAM in use (heap): {reclaimed} bytes ({kb(reclaimed)})")
print(f"  left for the main stack: {stack} bytes ({kb(stack)})")
EOF

if command -v espflash >/dev/null 2>&1; then
    espflash save-image --chip esp32c3 "$elf" "$elf.bin" >&2
    echo "build-firmware: wrote $elf.bin" >&2
fi

echo "$elf"
