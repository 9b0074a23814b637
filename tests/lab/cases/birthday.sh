#!/usr/bin/env bash
# One birthday-punch lab case (core::birthday on Linux sockets, through the
# `birthday` example of punchwire-linux), run by the birthday scenarios:
#   cases/birthday.sh NAME PROFILE_A PROFILE_B [OPTIONS] [-- WANEM_OPTIONS...]
# Both hosts run `birthday PEER` (UDP 5555, ordinary heartbeats, then the
# birthday rounds); B starts OFFSET s after A. Options:
#   --offset S      (default 1)
#   --expect-fail   both symmetric: both must give up cleanly (exit 4) within
#                   the budget, having sent at most 3 x 2048 datagrams each
#   --k N           extra sockets per side (default 256)
#   --extra-ttl N   TTL of the extra sockets' datagrams (default: the prime TTL
#                   the example learns with core::pathprobe; 0: the system's)
# Passes when both sides confirm the same path both ways (exit 0); reports
# the later side's time from its start to confirmed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"

name=$1 pa=$2 pb=$3
shift 3
offset=1 expect_fail=0 k=256 xttl=
while (($#)); do
	case $1 in
	--offset) offset=$2; shift 2 ;;
	--expect-fail) expect_fail=1; shift ;;
	--k) k=$2; shift 2 ;;
	--extra-ttl) xttl=$2; shift 2 ;;
	--) shift; break ;;
	*) lab_die "cases/birthday.sh: unknown option $1" ;;
	esac
done
BIN=${LAB_BIRTHDAY:-$LAB_REPO/target/release/examples/birthday}
[[ -x $BIN ]] || lab_die "$BIN not built (cargo build --release -p punchwire-linux --example birthday)"

lab_up "$pa" "$pb" --hops "${LAB_HOPS:-3}" "$@"
lab_log "$name: $pa/$pb, B starts ${offset}s later, K=$k"
lab_bg A a "$BIN" "$LAB_B_PUB" --k "$k" ${xttl:+--extra-ttl "$xttl"}
pid_a=$LAB_LAST_PID
sleep "$offset"
lab_bg B b "$BIN" "$LAB_A_PUB" --k "$k" ${xttl:+--extra-ttl "$xttl"}
pid_b=$LAB_LAST_PID
rc_a=0 rc_b=0
lab_wait "$pid_b" 150 || rc_b=$?
lab_wait "$pid_a" 20 || rc_a=$?
sed 's/^/  A| /' "$LAB_DIR/a.log" >&2 || true
sed 's/^/  B| /' "$LAB_DIR/b.log" >&2 || true
if ((expect_fail)); then
	lab_check "A gives up (rc $rc_a)" test "$rc_a" = 4
	lab_check "B gives up (rc $rc_b)" test "$rc_b" = 4
	for x in a b; do
		sent=$(sed -n 's/.*extra datagrams \([0-9]*\) probes \([0-9]*\)$/\1 \2/p' "$LAB_DIR/$x.log" | awk '{print $1+$2}')
		lab_in_range "${x^^} datagrams sent" "${sent:-99999}" 1 6144
		took=$(sed -n 's/.*gave up after \([0-9]*\) ms$/\1/p' "$LAB_DIR/$x.log")
		lab_in_range "${x^^} gave up within the budget (ms)" "${took:-999999}" 60000 83000
	done
else
	lab_check "A confirmed the path (rc $rc_a)" test "$rc_a" = 0
	lab_check "B confirmed the path (rc $rc_b)" test "$rc_b" = 0
	t=$(sed -n 's/^confirmed after \([0-9]*\) ms.*/\1/p' "$LAB_DIR/b.log" | head -n1)
	[[ -n $t ]] && lab_report connect "$t"
fi
lab_finish
