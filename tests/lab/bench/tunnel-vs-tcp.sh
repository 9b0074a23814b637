#!/usr/bin/env bash
# Benchmark: goodput of the punchwire udp tunnel against kernel TCP over the
# same lab path (a port forward on router B gives the TCP baseline), one
# direction (A's client -> B's service), plus the tunnel's peak RSS.
#   sudo [BENCH_DATA=random] tests/lab/bench/tunnel-vs-tcp.sh [FRAME_SIZES...]   (default: 1400)
# Paths: a clean 50 Mbit/s path, and 20 ms RTT with 1% loss each way.
# Prints one table; numbers vary with machine load (shared 2-core VM), so
# this is a report, not a test.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
frames=("$@")
((${#frames[@]})) || frames=(1400)
SVC=7001 LST=7002
results=()

mkdata() { # FILE BYTES: half random, half text (BENCH_DATA=random: all random)
	"$LAB_PY" - "$1" "$2" "${BENCH_DATA:-mixed}" <<-'PY'
		import base64, os, sys
		path, n = sys.argv[1], int(sys.argv[2])
		half = n if sys.argv[3] == "random" else n // 2
		text = base64.encodebytes(os.urandom(n))[: n - half]
		with open(path, "wb") as f:
		    f.write(os.urandom(half)); f.write(text)
	PY
}

elapsed_of() { sed -n 's/^elapsed //p' "$1" | tail -n1; }
mbit() { "$LAB_PY" -c "print(round($1*8/$2/1e6, 1))"; }

kernel_tcp() { # BYTES -> Mbit/s
	local bytes=$1
	lab_portfwd B tcp $SVC
	: >"$LAB_DIR/empty"
	lab_bg B ksvc env TCPIO_HOST=0 "$LAB_PY" "$LAB_ROOT/tcpio.py" serve $SVC "$LAB_DIR/empty" "$LAB_DIR/k.out"
	local ps=$LAB_LAST_PID
	sleep 0.3
	lab_exec A env TCPIO_HOST="$LAB_B_PUB" "$LAB_PY" "$LAB_ROOT/tcpio.py" connect $SVC "$LAB_DIR/data" "$LAB_DIR/k.back" >"$LAB_DIR/k.client"
	lab_wait "$ps" 60 || true
	cmp -s "$LAB_DIR/data" "$LAB_DIR/k.out" || lab_die "kernel TCP baseline lost bytes"
	mbit "$bytes" "$(elapsed_of "$LAB_DIR/ksvc.log")"
}

tunnel() { # BYTES FRAME -> "Mbit/s peakRSS_kB"
	local bytes=$1 frame=$2
	: >"$LAB_DIR/empty"
	lab_bg B tsvc "$LAB_PY" "$LAB_ROOT/tcpio.py" serve $SVC "$LAB_DIR/empty" "$LAB_DIR/t.out"
	local ps=$LAB_LAST_PID
	lab_bg B c "$LAB_PUNCHWIRE" udp -c $SVC "$LAB_A_PUB" --sessions 1 --frame-size "$frame"
	local pc=$LAB_LAST_PID
	lab_bg A l "$LAB_PUNCHWIRE" udp -l $LST "$LAB_B_PUB" --sessions 1 --frame-size "$frame"
	local pl=$LAB_LAST_PID
	sleep 1.5
	local rss=0 pid
	lab_bg A client "$LAB_PY" "$LAB_ROOT/tcpio.py" connect $LST "$LAB_DIR/data" "$LAB_DIR/t.back"
	local pcl=$LAB_LAST_PID
	# Peak RSS of the sending side while it is busy.
	while kill -0 "$pcl" 2>/dev/null; do
		for pid in $(pgrep -f "punchwire udp -l $LST" || true); do
			r=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
			((r > rss)) && rss=$r
		done
		sleep 0.2
	done
	lab_wait "$pcl" 600 || true
	lab_wait "$ps" 60 || true
	lab_wait "$pl" 60 || true
	lab_wait "$pc" 60 || true
	cmp -s "$LAB_DIR/data" "$LAB_DIR/t.out" || lab_die "tunnel lost bytes (frame $frame)"
	echo "$(mbit "$bytes" "$(elapsed_of "$LAB_DIR/tsvc.log")") $rss"
}

run_path() { # NAME BYTES WANEM_OPTIONS...
	local name=$1 bytes=$2
	shift 2
	local f k t
	for f in "${frames[@]}"; do
		lab_up openwrt openwrt --hops 3 "$@"
		mkdata "$LAB_DIR/data" "$bytes"
		k=$(kernel_tcp "$bytes")
		lab_up openwrt openwrt --hops 3 "$@"
		mkdata "$LAB_DIR/data" "$bytes"
		t=$(tunnel "$bytes" "$f")
		results+=("$name|$f|$k|${t% *}|$("$LAB_PY" -c "print(round(${t% *}/$k, 2))")|${t#* }")
	done
}

run_path "clean 50 Mbit/s" 20000000 --rate 50
run_path "20 ms RTT, 1% loss" 3000000 --delay 10 --loss 1

printf '\n%-20s %-7s %-16s %-16s %-7s %s\n' path frame "kernel TCP Mb/s" "tunnel Mb/s" ratio "tunnel peak RSS kB"
for r in "${results[@]}"; do
	IFS='|' read -r p f k t q m <<<"$r"
	printf '%-20s %-7s %-16s %-16s %-7s %s\n' "$p" "$f" "$k" "$t" "$q" "$m"
done
