#!/usr/bin/env bash
# Benchmark: tunnel goodput by frame size and loss on a 20 ms RTT path, with
# incompressible data (A's client -> B's service, 1 MB per run). Frames over
# ~1400 bytes are IP-fragmented and one lost fragment loses the frame.
#   sudo tests/lab/bench/frame-size.sh [FRAME_SIZES...]   (default 1400 4000 8000 16000 40000)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
frames=("$@")
((${#frames[@]})) || frames=(1400 4000 8000 16000 40000)
SVC=7001 LST=7002 BYTES=1000000
rows=()
for loss in 0 1 5; do
	row="$loss%"
	for f in "${frames[@]}"; do
		lab_up openwrt openwrt --hops 3 --delay 10 --loss "$loss" >/dev/null 2>&1
		head -c $BYTES /dev/urandom >"$LAB_DIR/data"
		: >"$LAB_DIR/empty"
		lab_bg B svc "$LAB_PY" "$LAB_ROOT/tcpio.py" serve $SVC "$LAB_DIR/empty" "$LAB_DIR/out"
		ps=$LAB_LAST_PID
		lab_bg B c "$LAB_PUNCHWIRE" udp -c $SVC "$LAB_A_PUB" --sessions 1 --frame-size "$f" --no-compress
		pc=$LAB_LAST_PID
		lab_bg A l "$LAB_PUNCHWIRE" udp -l $LST "$LAB_B_PUB" --sessions 1 --frame-size "$f" --no-compress
		pl=$LAB_LAST_PID
		lab_exec A "$LAB_PY" "$LAB_ROOT/tcpio.py" connect $LST "$LAB_DIR/data" "$LAB_DIR/back" >/dev/null
		lab_wait "$ps" 300 || true
		lab_wait "$pl" 60 || true
		lab_wait "$pc" 60 || true
		cmp -s "$LAB_DIR/data" "$LAB_DIR/out" || lab_die "lost bytes (frame $f, loss $loss)"
		e=$(sed -n 's/^elapsed //p' "$LAB_DIR/svc.log" | tail -n1)
		row="$row|$("$LAB_PY" -c "print(round($BYTES*8/$e/1e6, 2))")"
	done
	rows+=("$row")
done
printf '\ngoodput (Mbit/s), 20 ms RTT, by one-way loss and frame size\n'
printf '%-6s' loss
for f in "${frames[@]}"; do printf '%-9s' "$f"; done
echo
for r in "${rows[@]}"; do
	IFS='|' read -r -a cols <<<"$r"
	for c in "${cols[@]}"; do printf '%-9s' "$c"; done
	echo
done
