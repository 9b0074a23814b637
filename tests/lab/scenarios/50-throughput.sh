#!/usr/bin/env bash
# shellcheck disable=SC2154 # variables set by eval of nettool.py output
# Self-check: wanem sustains >= 200 Mbit/s of 1400-byte packets with no
# impairment (UDP, 1372-byte payload = 1400-byte IP packets), and TCP goodput.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
NT=$LAB_ROOT/nettool.py

lab_up openwrt openwrt
lab_portfwd B tcp 5201
lab_portfwd B udp 5201
lab_bg B iperf3 iperf3 -s
sleep 0.5
lab_exec A iperf3 -c "$LAB_B_PUB" -u -b 250M -l 1372 -w 4M -t 5 -J >"$LAB_DIR/udp.json"
eval "$("$LAB_PY" "$NT" iperfstat "$LAB_DIR/udp.json")"
lab_log "UDP 1400-byte packets offered 250 Mbit/s: received $goodput_mbit Mbit/s, lost $lost_pct %"
lab_in_range "UDP received (Mbit/s) at 250 offered, 1400-byte packets" "$goodput_mbit" 200 1000
lab_in_range "UDP loss (%) at 250 Mbit/s" "$lost_pct" 0 1
udp=$goodput_mbit
lab_exec A iperf3 -c "$LAB_B_PUB" -t 5 -J >"$LAB_DIR/tcp.json"
eval "$("$LAB_PY" "$NT" iperfstat "$LAB_DIR/tcp.json")"
lab_log "TCP goodput with no impairment: $goodput_mbit Mbit/s"
lab_in_range "TCP goodput (Mbit/s), no impairment" "$goodput_mbit" 200 100000
lab_report goodput "$udp"
lab_wanem_stats >&2
lab_finish
