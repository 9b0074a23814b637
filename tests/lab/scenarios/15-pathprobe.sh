#!/usr/bin/env bash
# The path probe (core::pathprobe on punchwire_linux::probe: UDP with
# IP_RECVERR, ICMP time exceeded read from MSG_ERRQUEUE) learns the prime
# TTL from the lab's real routers: 2 behind one NAT (home router, then the
# ISP hop), 3 behind a carrier NAT (home router 192.168.x.1, carrier
# 100.64.x.1, then the ISP), with three ISP hops and with one (where the
# fixed TTL 3 reaches the peer's router). The smoltcp backend
# (punchwire_esp::probe, the `smol-pathprobe` bin on a TAP behind the
# host, lab_smol: one NAT more) learns 3 behind openwrt and 4 behind cgnat.
# Builds the example and the bins unless LAB_PATHPROBE / LAB_SMOL_PATHPROBE
# name them.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
PROBE=${LAB_PATHPROBE:-$LAB_REPO/target/release/examples/pathprobe}
if [[ -z ${LAB_PATHPROBE:-} ]]; then
	(cd "$LAB_REPO" && cargo build -q --release -p punchwire-linux --example pathprobe) ||
		lab_die "cannot build the pathprobe example"
fi

SMOL_PROBE=${LAB_SMOL_PATHPROBE:-$LAB_REPO/target/release/smol-pathprobe}
if [[ -z ${LAB_SMOL_PATHPROBE:-} ]]; then
	(cd "$LAB_REPO" && cargo build -q --release -p punchwire-tests --bin smol-pathprobe --bin smol-node) ||
		lab_die "cannot build smol-pathprobe"
fi

probe() { # SITE PEER WANT_TTL WHAT [smol]
	local out
	if [[ ${5:-} == smol ]]; then
		# shellcheck disable=SC2046 # node options are a word list
		out=$(lab_exec "$1" "$SMOL_PROBE" $(lab_smol_args "$1") "$2" 2>&1) || true
	else
		out=$(lab_exec "$1" "$PROBE" "$2" 2>&1) || true
	fi
	sed "s/^/  $1| /" <<<"$out" >&2
	lab_check "$4: host $1 learns prime TTL $3" grep -qx "ttl $3 reason first-public-router" <<<"$out"
}

for hops in 3 1; do
	lab_up cgnat openwrt --hops "$hops"
	probe A "$LAB_B_PUB" 3 "cgnat/openwrt --hops $hops (two NATs)"
	probe B "$LAB_A_PUB" 2 "cgnat/openwrt --hops $hops (one NAT)"
	lab_up openwrt naked --hops "$hops"
	probe A "$LAB_B_PUB" 2 "openwrt/naked --hops $hops"
	probe B "$LAB_A_PUB" 2 "openwrt/naked --hops $hops (naked)"
	lab_up openwrt openwrt --hops "$hops"
	lab_smol A
	probe A "$LAB_B_PUB" 3 "smoltcp node behind openwrt --hops $hops (two NATs)" smol
	lab_up cgnat openwrt --hops "$hops"
	lab_smol A
	probe A "$LAB_B_PUB" 4 "smoltcp node behind cgnat --hops $hops (three NATs)" smol
done
lab_finish
