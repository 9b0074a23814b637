#!/usr/bin/env bash
# Both sides' NATs randomise ports: `punchwire udp` (birthday punching on by
# default) cannot meet, and must give up cleanly:
#   cases/udp-giveup.sh NAME PROFILE_A PROFILE_B [-- WANEM_OPTIONS...]
# Host B runs `punchwire udp -c`, host A `punchwire udp -l` 1 s later, both
# with -v and --silence 90. Passes when both escalated, logged the give-up
# ("birthday punching gave up after 3 rounds ...") within the budget (60-83 s
# after their start, at most 3 x 2048 datagrams), never heard the peer, and
# exited 4 (peer silent) at the silence timeout.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"

name=$1 pa=$2 pb=$3
shift 3
[[ ${1:-} == -- ]] && shift
lab_up "$pa" "$pb" --hops "${LAB_HOPS:-3}" "$@"
lab_log "$name: $pa/$pb, punchwire udp, both sides symmetric"
lab_bg B c "$LAB_PUNCHWIRE" udp -c 7001 "$LAB_A_PUB" 5555 --silence 90 -v
pid_c=$LAB_LAST_PID
sleep 1
lab_bg A l "$LAB_PUNCHWIRE" udp -l 7002 "$LAB_B_PUB" 5555 --silence 90 -v
pid_l=$LAB_LAST_PID
rc_l=0 rc_c=0
lab_wait "$pid_l" 150 || rc_l=$?
lab_wait "$pid_c" 30 || rc_c=$?
for x in l c; do
	grep -vE "debug: dropped" "$LAB_DIR/$x.log" | grep -E "birthday|escalat|gave up|silent" | sed "s/^/  $x| /" >&2 || true
done
lab_check "A exits 4, peer silent (rc $rc_l)" test "$rc_l" = 4
lab_check "B exits 4, peer silent (rc $rc_c)" test "$rc_c" = 4
for x in l c; do
	log=$LAB_DIR/$x.log
	lab_check "$x escalated to birthday punching" grep -q "escalating to birthday punching" "$log"
	lab_check "$x never heard the peer" bash -c "! grep -q 'peer heard' '$log'"
	line=$(sed -n 's/^punchwire\[ *\([0-9]*\)\.\([0-9]*\)\] [a-z]*: birthday punching gave up after 3 rounds (\([0-9]*\) extra datagrams, \([0-9]*\) probes).*/\1\2 \3 \4/p' "$log" | head -n1)
	read -r took extra probes <<<"${line:-999999 99999 0}"
	took=$((10#$took))
	lab_in_range "$x gave up after (ms)" "$took" 60000 83000
	lab_in_range "$x birthday datagrams sent" "$((extra + probes))" 1 6144
done
lab_finish
