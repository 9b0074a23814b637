#!/usr/bin/env bash
# One `punchwire tcp` lab case, run by the tcp scenarios:
#   cases/tcp.sh NAME PROFILE_A PROFILE_B [OPTIONS] [-- WANEM_OPTIONS...]
# Options:
#   --offset S        start B S seconds after A (default 2)
#   --skew S          B's clock is S seconds ahead of A's (default 0)
#   --edge            put A's clock 0.5 s before a bucket edge at its start
#                     (with --skew, the two sides straddle the edge)
#   --bytes N         bytes each side sends (default 1000000)
#   --pw "ARGS"       extra arguments for both punchwire sides
#   --reference-peer  B runs tests/py/tcp_punch_ref.py (the reference tool's
#                     stand-in) and A runs `punchwire tcp --reference`
#   --smol-a          A is the smoltcp node (smol-node on a TAP behind host A,
#                     see lab_smol) instead of `punchwire tcp`; --pw is B's only
# Passes when both sides exit 0 on the same port and every byte arrived
# intact both ways; reports the later side's time to connect (and with
# --smol-a the node's goodput per direction).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"

name=$1 pa=$2 pb=$3
shift 3
offset=2 skew=0 edge=0 bytes=1000000 pw_args="" ref=0 smol=0
while (($#)); do
	case $1 in
	--offset) offset=$2; shift 2 ;;
	--skew) skew=$2; shift 2 ;;
	--edge) edge=1; shift ;;
	--bytes) bytes=$2; shift 2 ;;
	--pw) pw_args=$2; shift 2 ;;
	--reference-peer) ref=1; shift ;;
	--smol-a) smol=1; shift ;;
	--) shift; break ;;
	*) lab_die "cases/tcp.sh: unknown option $1" ;;
	esac
done

((ref && smol)) && lab_die "cases/tcp.sh: --reference-peer and --smol-a exclude each other"
lab_up "$pa" "$pb" --hops "${LAB_HOPS:-3}" "$@"
((smol)) && lab_smol A
head -c "$bytes" /dev/urandom >"$LAB_DIR/a.in"
head -c "$bytes" /dev/urandom >"$LAB_DIR/b.in"

# Clock offsets: A's puts it 0.5 s before the next bucket edge (--edge).
off_a=0
if ((edge)); then
	off_a=$("$LAB_PY" -c 'import time; t=time.time(); pos=(t-20)%42; print(f"{42-pos-0.5+42*(pos>40):.3f}")')
fi
off_b=$("$LAB_PY" -c "print(f'{$off_a+$skew:.3f}')")
lab_log "$name: $pa/$pb, B starts ${offset}s later, clock offsets A=$off_a B=$off_b"

# shellcheck disable=SC2086 # pw_args is a word list on purpose
if ((smol)); then
	lab_bg A a bash -c "exec '$LAB_SMOL_NODE' $(lab_smol_args A) tcp $LAB_B_PUB --timeout 150 --clock-offset $off_a <'$LAB_DIR/a.in' >'$LAB_DIR/a.out'"
elif ((ref)); then
	lab_bg A a bash -c "exec '$LAB_PUNCHWIRE' -v tcp $LAB_B_PUB --reference --clock-offset $off_a $pw_args <'$LAB_DIR/a.in' >'$LAB_DIR/a.out'"
else
	lab_bg A a bash -c "exec '$LAB_PUNCHWIRE' -v tcp $LAB_B_PUB --timeout 150 --clock-offset $off_a $pw_args <'$LAB_DIR/a.in' >'$LAB_DIR/a.out'"
fi
pid_a=$LAB_LAST_PID
sleep "$offset"
if ((ref)); then
	lab_bg B b bash -c "exec '$LAB_PY' '$LAB_ROOT/../py/tcp_punch_ref.py' $LAB_A_PUB --clock-offset $off_b \
		--message 'reference peer says hello' --linger 20 >'$LAB_DIR/b.out'"
else
	lab_bg B b bash -c "exec '$LAB_PUNCHWIRE' -v tcp $LAB_A_PUB --timeout 150 --clock-offset $off_b $pw_args <'$LAB_DIR/b.in' >'$LAB_DIR/b.out'"
fi
pid_b=$LAB_LAST_PID
rc_a=0 rc_b=0
lab_wait "$pid_b" 200 || rc_b=$?
lab_wait "$pid_a" 60 || rc_a=$?
sed 's/^/  A| /' "$LAB_DIR/a.log" | grep -vE "debug|trace" | head -20 >&2 || true
sed 's/^/  B| /' "$LAB_DIR/b.log" | grep -vE "debug|trace" | head -20 >&2 || true

port_of() { sed -n 's/.*connected to [0-9.]*:\([0-9]*\) after.*/\1/p' "$1" | head -n1; }
after_of() { sed -n 's/.*connected to [0-9.:]* after \([0-9.]*\) s.*/\1/p' "$1" | head -n1; }

lab_check "A exits 0 (rc $rc_a)" test "$rc_a" = 0
lab_check "B exits 0 (rc $rc_b)" test "$rc_b" = 0
if ((ref)); then
	lab_check "reference peer connected" grep -q "connected on port" "$LAB_DIR/b.log"
	port_a=$(port_of "$LAB_DIR/a.log")
	lab_check "the reference peer connected on punchwire's port ${port_a:-none}" \
		grep -q "connected on port ${port_a:-none}\$" "$LAB_DIR/b.log"
	lab_check "reference peer's bytes arrived at punchwire" grep -q "reference peer says hello" "$LAB_DIR/a.out"
	lab_check "punchwire's bytes arrived at the reference peer intact" cmp "$LAB_DIR/a.in" "$LAB_DIR/b.out"
	t=$(after_of "$LAB_DIR/a.log")
else
	port_a=$(port_of "$LAB_DIR/a.log") port_b=$(port_of "$LAB_DIR/b.log")
	lab_check "both sides kept the same connection (A ${port_a:-none}, B ${port_b:-none})" \
		test -n "$port_a" -a "$port_a" = "${port_b:-x}"
	lab_check "A -> B byte-exact ($bytes bytes)" cmp "$LAB_DIR/a.in" "$LAB_DIR/b.out"
	lab_check "B -> A byte-exact ($bytes bytes)" cmp "$LAB_DIR/b.in" "$LAB_DIR/a.out"
	t=$(after_of "$LAB_DIR/b.log")
fi
# smol-node times its exchange (connected to both directions done): the
# per-direction goodput goes to the table (a report, not a check).
secs=$(sed -n 's/.*smol-node: done: .* in \([0-9.]*\) s$/\1/p' "$LAB_DIR/a.log" | head -n1)
if [[ -n $secs ]]; then
	lab_report goodput "$("$LAB_PY" -c "print(round($bytes*8/max($secs, 1e-3)/1e6, 1))")"
fi
if [[ -n ${t:-} ]]; then
	lab_report connect "$("$LAB_PY" -c "print(round($t*1000))")"
fi
lab_finish
