#!/usr/bin/env bash
# Self-check: each router profile behaves as named (port preservation or
# randomisation seen in conntrack; RST / ICMP vs silence for unsolicited inbound).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
NT=$LAB_ROOT/nettool.py
PORTS=(40001 40002 40003)

# mapped NODE ORIG_SRC SPORT -> port the NAT on NODE mapped SPORT to
mapped() {
	lab_conntrack "$1" -p udp --orig-src "$2" --orig-port-src "$3" |
		sed -n 's/.*dport=\([0-9]*\).*/\1/p' | head -n1
}

# check_ports SITE PROFILE: send from PORTS to the other site, read conntrack.
check_ports() {
	local site=$1 profile=$2 peer p n=0 kept_home=0 node src m
	if [[ $site == A ]]; then peer=$LAB_B_PUB; else peer=$LAB_A_PUB; fi
	for p in "${PORTS[@]}"; do
		lab_exec "$site" "$LAB_PY" "$NT" udp-send "$peer" 9 --sport "$p"
	done
	if [[ $profile == cgnat* ]]; then
		for p in "${PORTS[@]}"; do
			m=$(mapped "R$site" "$(priv "$site")" "$p")
			[[ $m == "$p" ]] && kept_home=$((kept_home + 1))
		done
		lab_check "$profile site $site: home router preserves ports ($kept_home/3)" test "$kept_home" = 3
		node=C$site src=100.64.$([[ $site == A ]] && echo 1 || echo 2).2
	else
		node=R$site src=$(priv "$site")
	fi
	local got=()
	for p in "${PORTS[@]}"; do
		m=$(mapped "$node" "$src" "$p")
		got+=("$p->${m:-none}")
		[[ $m == "$p" ]] && n=$((n + 1))
	done
	case $profile in
	random | cgnat-random)
		lab_check "$profile site $site: public ports randomised (${got[*]})" test "$n" -le 1
		;;
	*)
		lab_check "$profile site $site: public ports preserved (${got[*]})" test "$n" = 3
		;;
	esac
}
priv() { if [[ $1 == A ]]; then echo "$LAB_A_PRIV"; else echo "$LAB_B_PRIV"; fi; }
probe() { lab_exec "$1" "$LAB_PY" "$NT" "$2" "$3" "$4" --timeout 2; }

lab_up openwrt drop
check_ports A openwrt
check_ports B drop
lab_check "openwrt: unsolicited TCP SYN gets RST" test "$(probe B tcp-probe "$LAB_A_PUB" 4444)" = refused
lab_check "openwrt: unsolicited UDP gets ICMP port unreachable" test "$(probe B udp-probe "$LAB_A_PUB" 4445)" = refused
lab_check "openwrt: no conntrack entry kept for the rejected inbound" \
	test -z "$(lab_conntrack RA -p udp --orig-port-dst 4445)"
lab_check "drop: unsolicited TCP SYN gets nothing" test "$(probe A tcp-probe "$LAB_B_PUB" 4444)" = timeout
lab_check "drop: unsolicited UDP gets nothing" test "$(probe A udp-probe "$LAB_B_PUB" 4445)" = timeout

lab_up random cgnat
check_ports A random
check_ports B cgnat
lab_check "random: unsolicited TCP SYN gets RST" test "$(probe B tcp-probe "$LAB_A_PUB" 4444)" = refused
lab_check "cgnat: carrier NAT silently drops unsolicited TCP" test "$(probe A tcp-probe "$LAB_B_PUB" 4444)" = timeout

lab_up cgnat-random naked
check_ports A cgnat-random
check_ports B naked
lab_exec A "$LAB_PY" "$NT" udp-send "$LAB_B_PUB" 4446 --sport 4446
lab_check "naked: router keeps a conntrack entry for an unsolicited UDP packet to itself" \
	test -n "$(lab_conntrack RB -p udp --orig-port-dst 4446)"
lab_finish
