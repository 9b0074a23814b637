#!/usr/bin/env bash
# Self-check: the 'naked' router collision (SPEC section 3). A naive UDP punch
# (both hosts send from port P to the other's public IP:P, site A first) fails
# through a naked router B because A's early packet leaves a conntrack entry
# that breaks port preservation for host B; it succeeds through openwrt, and
# through naked too when A's first packets carry a low TTL (expire at the ISP).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
NT=$LAB_ROOT/nettool.py
P=40000

# punch [A's extra args...]: sets RES_A RES_B MAP_B
punch() {
	local pa pb
	lab_bg B punchB "$LAB_PY" "$NT" punch --port $P --peer "$LAB_A_PUB" --start-after 1.0 --duration 4
	pb=$LAB_LAST_PID
	sleep 0.1
	lab_bg A punchA "$LAB_PY" "$NT" punch --port $P --peer "$LAB_B_PUB" --duration 4 "$@"
	pa=$LAB_LAST_PID
	lab_wait "$pa" 15 || true
	lab_wait "$pb" 15 || true
	RES_A=$(sed -n 's/^RESULT //p' "$LAB_DIR/punchA.log")
	RES_B=$(sed -n 's/^RESULT //p' "$LAB_DIR/punchB.log")
	MAP_B=$(lab_conntrack RB -p udp --orig-src "$LAB_B_PRIV" --orig-port-src $P |
		sed -n 's/.*dport=\([0-9]*\).*/\1/p' | head -n1)
	lab_log "A: $RES_A; B: $RES_B; host B's port $P mapped to ${MAP_B:-none}"
}

lab_up openwrt naked
punch
lab_check "naked B: host B's mapping is NOT port-preserved ($P -> ${MAP_B:-none})" test "${MAP_B:-$P}" != $P
lab_check "naked B: naive punch fails (A: $RES_A, B: $RES_B)" test "$RES_A $RES_B" = "nothing nothing"

lab_up openwrt openwrt
punch
lab_check "openwrt B: host B's mapping is port-preserved ($P -> ${MAP_B:-none})" test "${MAP_B:-}" = $P
lab_check "openwrt/openwrt: naive punch succeeds both ways" \
	test "$RES_A|$RES_B" = "received from $LAB_B_PUB:$P|received from $LAB_A_PUB:$P"

lab_up openwrt naked
punch --low-ttl $((LAB_HOPS_A + 1)) --low-ttl-for 1.5
lab_check "naked B, low-TTL first packets: mapping preserved ($P -> ${MAP_B:-none})" test "${MAP_B:-}" = $P
lab_check "naked B, low-TTL first packets: punch succeeds both ways" \
	test "$RES_A|$RES_B" = "received from $LAB_B_PUB:$P|received from $LAB_A_PUB:$P"
lab_finish
