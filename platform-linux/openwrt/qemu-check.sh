#!/usr/bin/env bash
# Run a cross-built static punchwire under qemu-user (natively for x86_64)
# and check it against the host build, on loopback only.
set -uo pipefail

usage() {
    cat <<'USAGE'
Usage: platform-linux/openwrt/qemu-check.sh TARGET
       platform-linux/openwrt/qemu-check.sh --help

Runs target/TARGET/release/punchwire (build it first with build.sh) under
qemu-user-static (x86_64 natively) and checks, on 127.0.0.1 only:
  1. `punchwire schedule --json --at 1700000000` equals the host build's
     output byte for byte (the host build is made if missing);
  2. `echo LINE | punchwire tcp 127.0.0.1` prints LINE back and exits 0;
  3. a `punchwire udp -c` / `punchwire udp -l` pair (both the cross binary)
     carries one TCP session of a few MB each way, byte-exact, both exit 0;
after 2038-01-19 03:14:07 UTC, where a 32-bit time_t ends:
  4. `schedule --json --at 2208988800` (2040-01-01) equals the host build's;
  5. `tcp 127.0.0.1 --clock-offset S` with S putting its clock in 2040
     returns its line (the schedule of a post-2038 punch);
  6. with the system clock itself in 2040: qemu-user's dynamic build
     (qemu-ARCH, also for x86_64) under libfaketime, which fakes the clock
     qemu hands the guest: `schedule --json` with the clock frozen at
     2040-01-01 equals the host's --at 2208988800, and `tcp 127.0.0.1`
     with a 2040 clock (monotonic left alone) returns its line. A binary
     with 32-bit time_t panics here (musl's time32 clock_gettime fails
     with EOVERFLOW);
  7. `qemu-ARCH-static -strace` shows which clock syscall the binary makes
     (clock_gettime64 on the 32-bit targets; x86_64: skipped, native).
It also prints the peak RSS (VmHWM) of both udp sides; under qemu this is
qemu's process, so it includes qemu's own memory (a baseline is printed).
Installs qemu-user-static, qemu-user and faketime with apt-get (as root)
if missing.
Ends with a line "N passed, N failed"; exits 1 if anything failed,
2 on bad arguments.
Environment: QC_MB (size each way in MB, default 3), QC_TIMEOUT (s, 120).
USAGE
}

case "${1:-}" in
    -h | --help) usage; exit 0 ;;
    "") echo "qemu-check.sh: missing TARGET (see --help)" >&2; exit 2 ;;
esac
[ $# -eq 1 ] || { echo "qemu-check.sh: expected one TARGET (see --help)" >&2; exit 2; }
target=$1
case "$target" in
    x86_64-*-linux-musl) qemu=() ;;
    aarch64-*-linux-musl) qemu=(qemu-aarch64-static) ;;
    armv7-*-linux-musleabihf) qemu=(qemu-arm-static) ;;
    mipsel-*-linux-musl) qemu=(qemu-mipsel-static -cpu 24Kc) ;;
    mips-*-linux-musl) qemu=(qemu-mips-static -cpu 24Kc) ;;
    *) echo "qemu-check.sh: unknown target '$target' (see --help)" >&2; exit 2 ;;
esac

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
tdir=${CARGO_TARGET_DIR:-$root/target}
case "$tdir" in /*) ;; *) tdir="$root/$tdir" ;; esac
pw="$tdir/$target/release/punchwire"
host="$tdir/release/punchwire"
mb=${QC_MB:-3}
tmo=${QC_TIMEOUT:-120}

if [ ! -x "$pw" ]; then
    echo "qemu-check.sh: $pw not found; run platform-linux/openwrt/build.sh $target first" >&2
    exit 1
fi
if [ ${#qemu[@]} -gt 0 ] && ! command -v "${qemu[0]}" >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        echo "qemu-check.sh: installing qemu-user-static" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
    fi
    command -v "${qemu[0]}" >/dev/null || { echo "qemu-check.sh: ${qemu[0]} missing (apt-get install qemu-user-static)" >&2; exit 1; }
fi
qemu_dyn=qemu-x86_64
[ ${#qemu[@]} -gt 0 ] && qemu_dyn=${qemu[0]%-static}
libfaketime=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
if { ! command -v "$qemu_dyn" >/dev/null || [ ! -e "$libfaketime" ]; } && [ "$(id -u)" = 0 ]; then
    echo "qemu-check.sh: installing qemu-user and faketime" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user faketime >/dev/null
fi
if [ ! -x "$host" ]; then
    cargo build --release -q -p punchwire-linux || { echo "qemu-check.sh: host build failed" >&2; exit 1; }
fi

run=("${qemu[@]}" "$pw")
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
ok() { echo "PASS  $*"; passed=$((passed + 1)); }
bad() { echo "FAIL  $*"; failed=$((failed + 1)); }

echo "== $target: ${run[*]}"

# 1. schedule, byte for byte against the host build
"$host" schedule --json --at 1700000000 >"$work/sched.host"
if timeout "$tmo" "${run[@]}" schedule --json --at 1700000000 >"$work/sched.cross" 2>"$work/sched.err" &&
    cmp -s "$work/sched.cross" "$work/sched.host"; then
    ok "schedule --json --at 1700000000 equals the host build ($(wc -c <"$work/sched.cross") bytes)"
else
    bad "schedule --json differs from the host build or failed"
    cat "$work/sched.err"
    diff "$work/sched.cross" "$work/sched.host" | head -5
fi

# 2. a TCP punch on loopback (the 127.0.0.1 self-connection)
line="hello from $target through a punched TCP hole"
out=$(echo "$line" | timeout "$tmo" "${run[@]}" tcp 127.0.0.1 2>"$work/tcp.err")
rc=$?
if [ $rc = 0 ] && [ "$out" = "$line" ]; then
    ok "tcp 127.0.0.1 returned the line, exit 0"
else
    bad "tcp 127.0.0.1: exit $rc, got '$out'"
    tail -5 "$work/tcp.err"
fi

# 3. a UDP tunnel session on loopback, byte-exact both ways
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
svc=$(port) lst=$(port) ua=$(port) ub=$(port)
# The local service behind -c: reads everything, answers it upper-cased.
python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); s.settimeout(float(sys.argv[2]))
open(sys.argv[3], "w").close()
c, _ = s.accept(); c.settimeout(float(sys.argv[2])); data = b""
while True:
    d = c.recv(65536)
    if not d: break
    data += d
c.sendall(data.upper()); c.close()' "$svc" "$tmo" "$work/svc.ready" &
pids+=($!)
# -c connects at once: the service must be listening first. (Under
# qemu-mips a refused connect even looks connected: qemu returns TCP_INFO
# as a 4-byte int, so a big-endian guest reads tcpi_state 0, not CLOSE.)
for _ in $(seq 1 200); do [ -e "$work/svc.ready" ] && break; sleep 0.05; done
"${run[@]}" udp -c "$svc" 127.0.0.1 "$ua" --bind-port "$ub" --sessions 1 2>"$work/c.err" &
cpid=$!
pids+=("$cpid")
"${run[@]}" udp -l "$lst" 127.0.0.1 "$ub" --bind-port "$ua" --sessions 1 2>"$work/l.err" &
lpid=$!
pids+=("$lpid")
# Peak RSS: VmHWM only grows, so the last value read before exit is the peak.
hwm() {
    local pid=$1 out=$2 v
    while v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [ -n "$v" ]; do
        echo "$v" >"$out"
        sleep 0.05
    done
}
hwm "$cpid" "$work/c.hwm" &
hwm "$lpid" "$work/l.hwm" &
head -c $((mb * 1000000 * 3 / 4)) /dev/urandom | base64 >"$work/in"
t0=$(date +%s.%N)
timeout "$tmo" python3 -c '
import socket, sys, time, threading
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); break
    except OSError: time.sleep(0.05)
else:
    sys.exit("cannot connect to the -l side")
s.settimeout(float(sys.argv[3]))
data = open(sys.argv[2], "rb").read()
def send():
    s.sendall(data); s.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send); t.start()
out = b""
while True:
    d = s.recv(65536)
    if not d: break
    out += d
t.join()
if out != data.upper():
    sys.exit("mismatch: sent %d bytes, got %d back" % (len(data), len(out)))' "$lst" "$work/in" "$tmo"
crc=$?
t1=$(date +%s.%N)
# Both sides must exit 0 on their own soon after the session.
rcs=()
for p in $cpid $lpid; do
    for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill "$p" 2>/dev/null
    wait "$p"
    rcs+=($?)
done
wait 2>/dev/null
bytes=$(wc -c <"$work/in")
secs=$(echo "$t1 $t0" | awk '{printf "%.2f", $1 - $2}')
if [ $crc = 0 ] && [ "${rcs[0]}" = 0 ] && [ "${rcs[1]}" = 0 ]; then
    ok "udp tunnel carried $bytes bytes each way byte-exact in $secs s; -c and -l exited 0"
else
    bad "udp tunnel: client exit $crc, -c exit ${rcs[0]}, -l exit ${rcs[1]}"
    tail -n 3 "$work/c.err" "$work/l.err"
fi
# 4. the schedule after 2038, by --at
t2040=2208988800
"$host" schedule --json --at $t2040 >"$work/s2040.host"
if timeout "$tmo" "${run[@]}" schedule --json --at $t2040 >"$work/s2040.cross" 2>"$work/s2040.err" &&
    cmp -s "$work/s2040.cross" "$work/s2040.host"; then
    ok "schedule --json --at $t2040 (2040-01-01) equals the host build"
else
    bad "schedule --json --at $t2040 differs from the host build or failed"
    cat "$work/s2040.err"
fi

# 5. a loopback punch whose clock (--clock-offset) is in 2040
off=$((t2040 - $(date +%s)))
out=$(echo "$line" | timeout "$tmo" "${run[@]}" tcp 127.0.0.1 --clock-offset "$off" 2>"$work/off.err")
rc=$?
if [ $rc = 0 ] && [ "$out" = "$line" ]; then
    ok "tcp 127.0.0.1 --clock-offset $off (clock in 2040) returned the line"
else
    bad "tcp 127.0.0.1 --clock-offset $off: exit $rc, got '$out'"
    tail -5 "$work/off.err"
fi

# 6. the system clock itself in 2040 (libfaketime under qemu's dynamic build)
if command -v "$qemu_dyn" >/dev/null && [ -e "$libfaketime" ]; then
    dyn=("$qemu_dyn")
    [ ${#qemu[@]} -gt 1 ] && dyn+=("${qemu[@]:1}")
    if FAKETIME="2040-01-01 00:00:00" LD_PRELOAD=$libfaketime timeout "$tmo" "${dyn[@]}" "$pw" schedule --json \
        >"$work/fk.cross" 2>"$work/fk.err" && cmp -s "$work/fk.cross" "$work/s2040.host"; then
        ok "schedule --json with the system clock frozen at 2040-01-01 equals the host's --at $t2040"
    else
        bad "schedule --json with the system clock at 2040-01-01 failed or differs"
        tail -3 "$work/fk.err"
    fi
    out=$(echo "$line" | FAKETIME="@2040-01-01 00:00:00" FAKETIME_DONT_FAKE_MONOTONIC=1 LD_PRELOAD=$libfaketime \
        timeout "$tmo" "${dyn[@]}" "$pw" tcp 127.0.0.1 2>"$work/fk2.err")
    rc=$?
    if [ $rc = 0 ] && [ "$out" = "$line" ]; then
        ok "tcp 127.0.0.1 with the system clock in 2040 returned the line"
    else
        bad "tcp 127.0.0.1 with the system clock in 2040: exit $rc, got '$out'"
        tail -3 "$work/fk2.err"
    fi
else
    bad "no $qemu_dyn or libfaketime (apt-get install qemu-user faketime): system clock in 2040 not checked"
fi

# 7. which clock syscall (evidence; musl's time32 shim calls
# clock_gettime64 too, so check 6 is the one that decides)
if [ ${#qemu[@]} -gt 0 ]; then
    calls=$(timeout "$tmo" "${qemu[@]}" -strace "$pw" schedule 2>&1 >/dev/null |
        grep -o 'clock_gettime[0-9]*(' | sort | uniq -c | tr -s ' ' | tr '\n' ' ')
    echo "clock syscalls under qemu -strace: ${calls:-none}"
fi

note=""
if [ ${#qemu[@]} -gt 0 ]; then
    # qemu's own share: the peak RSS of a short run that does almost nothing.
    if [ -x /usr/bin/time ]; then
        base=$(/usr/bin/time -f %M "${run[@]}" schedule --at 1700000000 2>&1 >/dev/null | tail -1)
    else
        base='?'
    fi
    note=" (both include qemu: a short 'schedule' run under qemu peaks at $base kB)"
fi
echo "peak RSS (VmHWM): udp -c $(cat "$work/c.hwm" 2>/dev/null || echo ?) kB, udp -l $(cat "$work/l.hwm" 2>/dev/null || echo ?) kB$note"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
