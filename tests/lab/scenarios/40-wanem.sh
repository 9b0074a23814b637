#!/usr/bin/env bash
# shellcheck disable=SC2154 # variables set by eval of nettool.py output
# Self-check: wanem impairments measured end to end through the NATs
# (delay, jitter, loss, Gilbert-Elliott burst loss, duplication, reordering,
# MTU, rate limit). Tolerances are wide on purpose: no flaky assertions.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../lib.sh
source "$(dirname "$0")/../lib.sh"
NT=$LAB_ROOT/nettool.py

# pingrun NAME PING_ARGS... : ping B's public address from host A, then load
# the summary as variables (sent received loss_pct dups rtt_* mean_burst inversions).
pingrun() {
	local name=$1 out
	shift
	lab_exec A ping -n -W1 "$@" "$LAB_B_PUB" >"$LAB_DIR/$name.log" 2>&1 || true
	out=$("$LAB_PY" "$NT" pingstat "$LAB_DIR/$name.log")
	eval "$out"
	lab_log "$name: $(tr '\n' ' ' <<<"$out")"
}

# Delay and jitter: one-way 20 ms +-2 ms each way -> RTT 36..44 ms.
lab_up openwrt openwrt --delay 20 --jitter 2 --seed 7
pingrun delay -c 40 -i 0.05
lab_in_range "RTT min (ms) with --delay 20 --jitter 2" "$rtt_min" 36 44
lab_in_range "RTT avg (ms) with --delay 20 --jitter 2" "$rtt_avg" 38 55
lab_in_range "ping loss (%) without --loss" "$loss_pct" 0 0

# Asymmetric delay: only A->B delayed.
lab_up openwrt openwrt --delay-ab 30 --seed 7
pingrun asym -c 20 -i 0.05
lab_in_range "RTT avg (ms) with --delay-ab 30" "$rtt_avg" 30 40

# Random loss on requests only, duplication on replies only.
lab_up openwrt openwrt --loss-ab 10 --dup-ba 10 --seed 7
pingrun loss -c 1000 -i 0.005
lab_in_range "ping loss (%) with --loss-ab 10 over $sent packets" "$loss_pct" 5 15
dup_pct=$(awk -v d="$dups" -v r="$received" 'BEGIN { printf "%.2f", 100 * d / r }')
lab_in_range "duplicated replies (%) with --dup-ba 10" "$dup_pct" 5 15

# Gilbert-Elliott: P=2% R=20% -> mean loss 9.1 %, mean burst 5 packets;
# reordering on the way back: 30 % of replies held 20 ms.
lab_up openwrt openwrt --ge-ab 2,20 --delay-ba 2 --reorder-ba 30 --reorder-delay-ba 20 --seed 7
pingrun ge -c 2000 -i 0.003
lab_in_range "GE loss (%) with --ge-ab 2,20 (mean 9.1)" "$loss_pct" 3 18
lab_in_range "GE mean loss burst (packets, Bernoulli would be ~1.1)" "$mean_burst" 2.5 12
inv_pct=$(awk -v i="$inversions" -v r="$received" 'BEGIN { printf "%.2f", 100 * i / r }')
lab_in_range "replies arriving out of order (%) with --reorder-ba 30" "$inv_pct" 10 60

# MTU and rate limit.
lab_up openwrt openwrt --mtu 1400 --rate 20 --seed 7
out=$(lab_exec A ping -n -c1 -W2 -M "do" -s 1372 "$LAB_B_PUB" 2>&1 || true)
lab_check "1400-byte packet passes --mtu 1400" grep -q 'bytes from' <<<"$out"
out=$(lab_exec A ping -n -c1 -W2 -M "do" -s 1373 "$LAB_B_PUB" 2>&1 || true)
lab_check "1401-byte DF packet gets ICMP frag needed (mtu = 1400)" grep -q 'mtu = 1400' <<<"$out"
lab_portfwd B tcp 5201
lab_bg B iperf3 iperf3 -s -1
sleep 0.5
lab_exec A iperf3 -c "$LAB_B_PUB" -t 5 -J >"$LAB_DIR/rate.json"
eval "$("$LAB_PY" "$NT" iperfstat "$LAB_DIR/rate.json")"
lab_in_range "TCP goodput (Mbit/s) through --rate 20" "$goodput_mbit" 14 20.5
lab_report goodput "$goodput_mbit"
lab_wanem_stats >&2
lab_finish
