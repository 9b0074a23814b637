#!/usr/bin/env bash
# One `punchwire udp` tunnel lab case, run by the udp scenarios:
#   cases/udp.sh NAME PROFILE_A PROFILE_B [OPTIONS] [-- WANEM_OPTIONS...]
# Host B runs the -c side with a local service, host A the -l side with a
# local client; client and service send BYTES each way at once (half random,
# half compressible text) and both directions are compared byte for byte.
# Options:
#   --bytes N       bytes each way (default 20000000)
#   --offset S      start A's side S seconds after B's (default 1)
#   --ref-c         B runs tests/py/udphp_ref.py -c instead of punchwire
#   --ref-l         A runs tests/py/udphp_ref.py -l instead of punchwire
#   --pw "ARGS"     extra arguments for the punchwire sides
#   --smol-a        A's -l side is the smoltcp node (smol-node on a TAP behind
#                   host A, see lab_smol); the client connects to it from host A
#   --smol-b        B's -c side is the smoltcp node; the service listens on the
#                   TAP's kernel side in host B and the node connects to it
#   --proto P       check that the punchwire sides spoke P (pw1 or v012)
# Reports the A->B goodput (Mbit/s) for the table.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"

name=$1 pa=$2 pb=$3
shift 3
bytes=20000000 offset=1 ref_c=0 ref_l=0 pw_args="" smol_a=0 smol_b=0 proto=
while (($#)); do
	case $1 in
	--bytes) bytes=$2; shift 2 ;;
	--offset) offset=$2; shift 2 ;;
	--ref-c) ref_c=1; shift ;;
	--ref-l) ref_l=1; shift ;;
	--pw) pw_args=$2; shift 2 ;;
	--smol-a) smol_a=1; shift ;;
	--smol-b) smol_b=1; shift ;;
	--proto) proto=$2; shift 2 ;;
	--) shift; break ;;
	*) lab_die "cases/udp.sh: unknown option $1" ;;
	esac
done

((smol_a && ref_l || smol_b && ref_c)) && lab_die "cases/udp.sh: a side is either smoltcp or the reference"
lab_up "$pa" "$pb" --hops "${LAB_HOPS:-3}" "$@"
((smol_a)) && lab_smol A
((smol_b)) && lab_smol B
mk() { # FILE: half random, half text (compressible)
	"$LAB_PY" - "$1" "$bytes" <<-'PY'
		import base64, os, sys
		path, n = sys.argv[1], int(sys.argv[2])
		half = n // 2
		text = base64.encodebytes(os.urandom(n)).replace(b"+", b"the ")[: n - half]
		with open(path, "wb") as f:
		    f.write(os.urandom(half))
		    f.write(text)
	PY
}
mk "$LAB_DIR/a.in"
mk "$LAB_DIR/b.in"
SVC=7001 LST=7002 UDP=5555
REF=$LAB_ROOT/../py/udphp_ref.py
lab_log "$name: $pa/$pb, $bytes bytes each way"

# udphp.py ends the whole tunnel at its first local EOF, so with it the
# two directions take turns instead of flowing at once.
order=()
((ref_c || ref_l)) && order=(--expect "$bytes")
# With --smol-b the service listens on every address (TCPIO_HOST set), so
# the node reaches it on the TAP's kernel side; with --smol-a the client
# connects to the node.
svc_env=() client_env=()
((smol_b)) && svc_env=(TCPIO_HOST=any)
((smol_a)) && client_env=(TCPIO_HOST="$LAB_SMOL_A_ADDR")
lab_bg B service env "${svc_env[@]}" "$LAB_PY" "$LAB_ROOT/tcpio.py" serve $SVC "$LAB_DIR/b.in" "$LAB_DIR/b.out" "${order[@]}"
pid_svc=$LAB_LAST_PID
# shellcheck disable=SC2086 # pw_args is a word list on purpose
if ((smol_b)); then
	# shellcheck disable=SC2046 # node options are a word list
	lab_bg B c "$LAB_SMOL_NODE" $(lab_smol_args B) udp "$LAB_A_PUB" -c "$LAB_SMOL_B_GW:$SVC" --port $UDP --sessions 1 --stats 5 --silence 15
elif ((ref_c)); then
	lab_bg B c "$LAB_PY" "$REF" -c $SVC "$LAB_A_PUB" $UDP
else
	lab_bg B c "$LAB_PUNCHWIRE" udp -c $SVC "$LAB_A_PUB" $UDP --sessions 1 --stats 5 --silence 15 $pw_args
fi
pid_c=$LAB_LAST_PID
sleep "$offset"
# shellcheck disable=SC2086
if ((smol_a)); then
	# shellcheck disable=SC2046
	lab_bg A l "$LAB_SMOL_NODE" $(lab_smol_args A) udp "$LAB_B_PUB" -l $LST --port $UDP --sessions 1 --stats 5 --silence 15
elif ((ref_l)); then
	lab_bg A l "$LAB_PY" "$REF" -l $LST "$LAB_B_PUB" $UDP
else
	lab_bg A l "$LAB_PUNCHWIRE" udp -l $LST "$LAB_B_PUB" $UDP --sessions 1 --stats 5 --silence 15 $pw_args
fi
pid_l=$LAB_LAST_PID
lab_bg A client env "${client_env[@]}" "$LAB_PY" "$LAB_ROOT/tcpio.py" connect $LST "$LAB_DIR/a.in" "$LAB_DIR/a.out" "${order[@]}"
pid_client=$LAB_LAST_PID

rc_client=0 rc_svc=0 rc_l=0 rc_c=0
lab_wait "$pid_client" 200 || rc_client=$?
lab_wait "$pid_svc" 30 || rc_svc=$?
lab_wait "$pid_l" 60 || rc_l=$?
lab_wait "$pid_c" 60 || rc_c=$?
grep -vE "debug|trace" "$LAB_DIR/l.log" | sed 's/^/  A| /' | tail -8 >&2 || true
grep -vE "debug|trace" "$LAB_DIR/c.log" | sed 's/^/  B| /' | tail -8 >&2 || true

lab_check "local client finished (rc $rc_client)" test "$rc_client" = 0
lab_check "local service finished (rc $rc_svc)" test "$rc_svc" = 0
lab_check "A -> B byte-exact ($bytes bytes: sha256 $(sha256sum <"$LAB_DIR/a.in" | cut -c1-12))" cmp "$LAB_DIR/a.in" "$LAB_DIR/b.out"
lab_check "B -> A byte-exact ($bytes bytes)" cmp "$LAB_DIR/b.in" "$LAB_DIR/a.out"
# Against udphp.py (which never sends our end-of-stream frame and just
# exits) punchwire's session cannot end cleanly: it stops when the peer
# falls silent (exit 4). Between two punchwire sides both must exit 0.
if ((ref_c || ref_l)); then
	((ref_l)) || lab_check "-l side stops once udphp.py is gone (rc $rc_l)" test "$rc_l" = 4
	((ref_c)) || lab_check "-c side stops once udphp.py is gone (rc $rc_c)" test "$rc_c" = 4
else
	lab_check "-l side exits 0 after its session (rc $rc_l)" test "$rc_l" = 0
	lab_check "-c side exits 0 after its session (rc $rc_c)" test "$rc_c" = 0
fi
if [[ -n $proto ]]; then
	want="protocol $proto"
	[[ $proto == v012 ]] && want="protocol udphp v0.12"
	for side in l c; do
		lab_check "$side side spoke $proto" grep -q "$want" "$LAB_DIR/$side.log"
	done
fi
elapsed=$(sed -n 's/^elapsed //p' "$LAB_DIR/client.log" | tail -n1)
if [[ -n $elapsed ]]; then
	lab_report goodput "$("$LAB_PY" -c "print(round($bytes*8/$elapsed/1e6, 1))")"
fi
lab_finish
